"""AdvGAN training beats chance on a small budget and resumes exactly; AT-GAN fine-tuning and training against a
frozen critic run, leave the original generator alone, and the differentiable Frechet distance matches the
evaluation's."""

from __future__ import annotations

import json

import pytest
import torch

import alva.models
from alva.attacks.generator_attacks import AdvGANAttack, UnrestrictedGeneratorAttack
from alva.evaluation.generative import frechet_distance
from alva.models.gan import ACCritic
from alva.tracking.checkpoint import load_checkpoint, save_checkpoint
from alva.training.advgan import AdvGANSettings, adversarial_margin, random_targets, train_advgan
from alva.training.atgan import ATGANSettings, finetune_atgan, frechet_loss, load_critic, train_against_critic


def test_trained_advgan_beats_chance(cnn_small, train_subset, test_subset):
    x, y = train_subset[0][:1000], train_subset[1][:1000]
    generator, history = train_advgan(cnn_small, (x, y), 0.3, AdvGANSettings(epochs=1, batch_size=50, width=16),
                                      progress=False)
    xt, yt = test_subset[0][:300], test_subset[1][:300]
    result = AdvGANAttack(cnn_small, generator)(xt, yt)
    assert (result.x_adv - xt).abs().max() <= 0.3 + 1e-6
    # chance: random signs of the same size
    noise = (xt + 0.3 * torch.randint(0, 2, xt.shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1))
    with torch.no_grad():
        chance = (cnn_small(noise.clamp(0, 1)).argmax(1) != yt).float().mean().item()
    assert result.success_rate > chance + 0.3, (result.success_rate, chance)
    assert history[0]["train"]["l2"] > 0 and generator.card["eps"] == 0.3
    assert generator.card["target_model_classes"] == 10 and generator.num_classes == 0  # untargeted: no class input
    assert not any(p.requires_grad is False for p in cnn_small.parameters())  # target restored


def test_advgan_resume_matches_uninterrupted(tmp_path, cnn_small, train_subset):
    data = train_subset[0][:128], train_subset[1][:128]
    settings = AdvGANSettings(epochs=2, batch_size=64, width=8, targeted=True)
    full, _ = train_advgan(cnn_small, data, 0.2, settings, out=tmp_path / "full", progress=False)
    train_advgan(cnn_small, data, 0.2, AdvGANSettings(epochs=1, batch_size=64, width=8, targeted=True),
                 out=tmp_path / "part", progress=False)
    resumed, history = train_advgan(cnn_small, data, 0.2, settings, out=tmp_path / "part", resume=True,
                                    progress=False)
    assert [r["epoch"] for r in history] == [2]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "part" / "generator.safetensors").exists()
    assert (tmp_path / "part" / "samples" / "epoch_002.png").exists()
    with pytest.raises(ValueError, match="settings differ"):
        train_advgan(cnn_small, data, 0.1, settings, out=tmp_path / "part", resume=True, progress=False)


def test_adversarial_margin_and_random_targets():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 5.0, 1.0]])
    y = torch.tensor([0, 0])
    # untargeted: own logit minus the best other, clamped at -kappa
    assert adversarial_margin(logits, y, None, kappa=2.0).tolist() == [2.0, -2.0]
    # targeted (target 2): best other minus the target's logit
    assert adversarial_margin(logits, y, torch.tensor([2, 2]), kappa=10.0).tolist() == [3.0, 4.0]
    torch.manual_seed(0)
    labels = torch.arange(1000) % 10
    targets = random_targets(labels, 10)
    assert (targets != labels).all() and targets.min() == 0 and targets.max() == 9


def test_frechet_loss_matches_evaluation():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(64, 20, generator=gen, dtype=torch.float64)
    b = torch.randn(64, 20, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    assert frechet_loss(a, b).item() == pytest.approx(frechet_distance(a, b), rel=1e-6)
    assert frechet_loss(a, a).item() == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize("distance", ["l2", "frechet"])
def test_atgan_finetune_raises_success_and_keeps_the_original(tmp_path, cnn_small, distance):
    original = alva.models.load_generator("mnist/acwgan-gp")
    before = {k: v.clone() for k, v in original.state_dict().items()}
    settings = ATGANSettings(epochs=1, steps_per_epoch=15, batch_size=32, lr=5e-4, distance=distance,
                             dist_weight=0.01)
    g_adv, history = finetune_atgan(original, cnn_small, settings, reference=alva.models.load("mnist/cnn-small-fast"),
                                    out=tmp_path, progress=False)
    for k, v in original.state_dict().items():
        assert torch.equal(v, before[k])
    oracle = alva.models.load("mnist/mlp")
    adv = UnrestrictedGeneratorAttack(g_adv, cnn_small, oracle=oracle).sample(300, seed=1)
    clean = UnrestrictedGeneratorAttack(original, cnn_small, oracle=oracle).sample(300, seed=1)
    assert adv.success.float().mean() > clean.success.float().mean() + 0.1
    assert alva.models.load_generator(tmp_path).card["method"] == "atgan-finetune"
    assert f"dist_{distance}" in history[0]["train"]


def test_training_against_a_saved_critic_runs(tmp_path, cnn_small):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "ckpt.safetensors", {"critic": ACCritic().state_dict()})
    critic = load_critic(tmp_path / "ckpt.safetensors")
    assert not any(p.requires_grad for p in critic.parameters())
    g, history = train_against_critic(critic, cnn_small, ATGANSettings(epochs=1, steps_per_epoch=3, batch_size=16),
                                      out=tmp_path / "run", progress=False)
    assert len(history) == 1 and "critic_score" in history[0]["train"]
    assert load_checkpoint(tmp_path / "run" / "checkpoint.safetensors")["epochs_done"] == 1
    with torch.no_grad():
        assert g(g.get_noise(4, seed=0), torch.arange(4)).shape == (4, 1, 28, 28)


def test_the_shipped_critic_carries_the_sha256_of_its_weights_and_loads_checked(tmp_path):
    from alva.tracking.verify import SHA256_KEY, DamagedFileError, read_verified, tensors_sha256
    from alva.training.atgan import SHIPPED_CRITIC

    tensors, metadata = read_verified(SHIPPED_CRITIC)
    assert metadata[SHA256_KEY] == tensors_sha256(tensors)
    assert not any(p.requires_grad for p in load_critic().parameters())
    altered = tmp_path / "critic.safetensors"
    raw = bytearray(SHIPPED_CRITIC.read_bytes())
    raw[-1] ^= 0xFF  # one bit pattern of the last weight changed
    altered.write_bytes(bytes(raw))
    with pytest.raises(DamagedFileError, match="SHA-256"):
        load_critic(altered)


def test_cli_advgan_and_atgan(tmp_path, capsys):
    from alva.cli.main import main

    out = tmp_path / "advgan"
    assert main(["advgan", "train", "--train-size", "128", "--epochs", "1", "--n-eval", "100", "--no-progress",
                 "--out", str(out)]) == 0
    assert main(["advgan", "attack", "--generator", str(out), "--n-eval", "100", "--out", str(tmp_path / "a")]) == 0
    for name in ("summary.json", "grid.png", "generator.safetensors", "samples/epoch_001.png"):
        assert (out / name).exists()
    assert main(["atgan", "finetune", "--epochs", "1", "--steps", "2", "--batch-size", "16", "--n-eval", "100",
                 "--no-progress", "--out", str(tmp_path / "at")]) == 0
    assert main(["advgan", "figure", f"x={out}/summary.json", f"y={tmp_path}/at/summary.json",
                 "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").exists() and (tmp_path / "at" / "grid.png").exists()
    assert main(["atgan", "critic", "--epochs", "1", "--steps", "2", "--batch-size", "16", "--n-eval", "100",
                 "--no-progress", "--out", str(tmp_path / "critic")]) == 0
    assert alva.models.load_generator(tmp_path / "critic").card["method"] == "against-critic"
    assert json.loads((tmp_path / "critic" / "summary.json").read_text())["kind"] == "generator-attack-summary"
    assert "success" in capsys.readouterr().out
