"""GAN training: a short epoch writes checkpoint, metrics and a grid; resume equals an uninterrupted run."""

from __future__ import annotations

import pytest
import torch

from alva.tracking.logger import read_metrics
from alva.training.gan import GanSettings, gradient_penalty, make_models, train_gan


@pytest.fixture(scope="module")
def tiny(train_subset):
    x, y = train_subset
    return x[:256], y[:256]


def _run(data, settings, out, resume=False, seed=0):
    torch.manual_seed(seed)
    generator, critic = make_models(settings.conditional, latent_dim=16)
    history = train_gan(generator, critic, data, settings, out=out, resume=resume, progress=False)
    return generator, history


def test_one_epoch_writes_checkpoint_metrics_and_grid(tiny, tmp_path):
    settings = GanSettings(epochs=1, batch_size=64, n_critic=2)
    _, history = _run(tiny, settings, tmp_path)
    assert (tmp_path / "checkpoint.safetensors").exists()
    assert (tmp_path / "samples" / "epoch_001.png").read_bytes()[:4] == b"\x89PNG"
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert len(records) == 1 and len(history) == 1
    for key in ("wasserstein", "gp", "aux_loss", "generator_loss", "critic_loss"):
        assert key in history[0]["train"], key


@pytest.mark.parametrize("conditional", [True, False])
def test_resume_equals_uninterrupted(tiny, tmp_path, conditional):
    settings = GanSettings(epochs=2, batch_size=64, n_critic=2, conditional=conditional, seed=3)
    whole, _ = _run(tiny, settings, tmp_path / "whole")
    _run(tiny, GanSettings(**{**settings.__dict__, "epochs": 1}), tmp_path / "parts")
    resumed, history = _run(tiny, settings, tmp_path / "parts", resume=True, seed=99)
    assert [r["epoch"] for r in history] == [2]
    for k, v in whole.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert len(read_metrics(tmp_path / "parts" / "metrics.jsonl")) == 2


def test_resume_refuses_changed_settings(tiny, tmp_path):
    _run(tiny, GanSettings(epochs=1, batch_size=64, n_critic=2), tmp_path)
    with pytest.raises(ValueError, match="settings differ"):
        _run(tiny, GanSettings(epochs=2, batch_size=64, n_critic=3), tmp_path, resume=True)


def test_gradient_penalty_is_zero_for_a_unit_slope_critic():
    class Slope(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, 0], torch.zeros(len(x), 10)

    real, fake = torch.rand(4, 1, 28, 28), torch.rand(4, 1, 28, 28)
    assert gradient_penalty(Slope(), real, fake).item() == pytest.approx(0.0, abs=1e-6)


def test_cli_trains_and_writes_a_generator_with_its_card(tmp_path):
    from alva.cli.main import main
    from alva.models import load_generator

    out = tmp_path / "run"
    assert main(["gan", "train", "--conditional", "--epochs", "1", "--train-size", "128", "--n-critic", "2",
                 "--eval-samples", "200", "--no-progress", "--out", str(out)]) == 0
    generator = load_generator(out)
    info = generator.card
    assert info["kind"] == "generator" and info["conditional"] and info["train_size"] == 128
    assert 0.0 <= info["label_agreement"] <= 1.0 and info["frechet_distance_oracle_features"] > 0
    assert (out / "samples" / "epoch_001.png").exists()


def test_cli_card_of_an_unconditional_generator_says_its_number_of_classes(tmp_path):
    from alva.cli.main import main
    from alva.models import load_generator

    assert main(["gan", "train", "--unconditional", "--epochs", "1", "--train-size", "128", "--n-critic", "2",
                 "--oracle", "none", "--no-progress", "--out", str(tmp_path)]) == 0
    info = load_generator(tmp_path).card
    assert not info["conditional"] and info["num_classes"] == 10
