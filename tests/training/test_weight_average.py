"""TrainSettings.ema: the loop evaluates and saves the moving average of the weights, training goes on from the raw
weights, and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from alva.data import fixed_subset
from alva.models import create
from alva.tracking import load_checkpoint
from alva.training import TrainSettings, fit
from alva.training.loop import CHECKPOINT
from alva.training.settings import ema_decay


class Stop(Exception):
    pass


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return create("softmax")


def _settings(**changes) -> TrainSettings:
    return TrainSettings(**{"epochs": 2, "batch_size": 100, "lr": 0.05, "optimizer": "sgd", "seed": 3, **changes})


@pytest.fixture(scope="module")
def small_train(train_subset):
    return fixed_subset(*train_subset, 600, seed=1)


def test_the_saved_model_is_the_moving_average_of_the_raw_weights(tmp_path, small_train):
    steps: list[dict[str, torch.Tensor]] = []
    raw = _model()
    record = register_optimizer_step_post_hook(
        lambda *_: steps.append({k: v.clone() for k, v in raw.state_dict().items()}))
    try:
        fit(raw, small_train, _settings(), progress=False)
    finally:
        record.remove()
    settings = _settings(ema=0.9)
    averaged = _model()
    fit(averaged, small_train, settings, out=tmp_path, progress=False)

    by_hand = {k: v.clone() for k, v in _model().state_dict().items()}
    for step, weights in enumerate(steps):
        decay = ema_decay(settings, step)
        by_hand = {k: decay * by_hand[k] + (1 - decay) * weights[k] for k in by_hand}
    for key, value in averaged.state_dict().items():
        torch.testing.assert_close(value, by_hand[key], rtol=1e-5, atol=1e-6)
    # The average, not the last weights.
    assert any(not torch.allclose(p, steps[-1][k]) for k, p in averaged.state_dict().items())
    # Training went on from the raw weights: the checkpoint holds them beside the average.
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    for key, value in saved["ema_raw"].items():
        assert torch.equal(value, steps[-1][key]), key


def test_resume_with_an_average_equals_an_uninterrupted_run(tmp_path, small_train):
    settings = _settings(ema=0.95)
    whole = _model()
    fit(whole, small_train, settings, progress=False)

    def stop(epoch, _record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(_model(), small_train, settings, out=tmp_path, progress=False, on_epoch_end=stop)
    resumed = _model(seed=7)
    history = fit(resumed, small_train, settings, out=tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in history] == [2]
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_a_run_saved_without_an_average_cannot_resume_with_one(tmp_path, small_train):
    fit(_model(), small_train, _settings(epochs=1), out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="ema: 0.0 -> 0.9"):
        fit(_model(), small_train, _settings(ema=0.9), out=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5])
def test_a_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="ema"):
        _settings(ema=decay)
