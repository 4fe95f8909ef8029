"""N-FGSM and GradAlign: N-FGSM's examples leave the eps ball by design and stay inside the bounds; GradAlign's
regulariser vanishes where the input gradients align, is positive where they do not, and trains the weights;
both objectives make a small model more robust than standard training, and a resumed run ends where an
uninterrupted one does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from robust_training import EPS, robust_accuracy, train_cnn_small
from torch import nn

from alva.attacks import Linf
from alva.models import create
from alva.training import (
    NFGSM,
    OBJECTIVES,
    GradAlign,
    Standard,
    get_objective,
    gradient_misalignment,
    noisy_fgsm,
)


def _input_gradient(model, x, y):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    return x.grad


def test_noisy_fgsm_leaves_the_eps_ball_but_not_the_noise_plus_step_ball_or_the_bounds(test_subset, cnn_small):
    x, y = test_subset[0][:64], test_subset[1][:64]
    torch.manual_seed(0)
    x_adv = noisy_fgsm(cnn_small, x, y, noise=2 * EPS, alpha=EPS, norm=Linf())
    distance = (x_adv - x).abs().flatten(1).amax(1)
    assert (distance <= 3 * EPS + 1e-6).all()
    assert (distance > EPS + 1e-3).float().mean() > 0.9  # not projected back onto the eps ball
    assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_noisy_fgsm_without_noise_is_one_fgsm_step(test_subset, cnn_small):
    x, y = test_subset[0][:32], test_subset[1][:32]
    expected = (x + EPS * _input_gradient(cnn_small, x, y).sign()).clamp(0, 1)
    assert torch.allclose(noisy_fgsm(cnn_small, x, y, noise=0.0, alpha=EPS, norm=Linf()), expected, atol=1e-6)


def test_n_fgsm_examples_stay_inside_other_bounds_and_follow_the_noise_setting():
    x = -0.5 - 0.5 * torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0))  # inputs in [-1, -0.5]
    y = torch.arange(16) % 3
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for noise, limit in [(2.0, 3 * EPS), (0.5, 1.5 * EPS)]:
        torch.manual_seed(1)
        x_adv = noisy_fgsm(model, x, y, noise * EPS, EPS, Linf(), bounds=(-1.0, 1.0))
        distance = (x_adv - x).abs().max()
        assert EPS < distance <= limit + 1e-6
        assert x_adv.min() >= -1


def test_misalignment_is_zero_where_the_input_gradients_align():
    # Two classes and a linear model: the input gradient of the cross-entropy is (p1 - y1) (w1 - w0), the same
    # direction everywhere for a given label.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))
    x, y = torch.rand(32, 1, 28, 28), torch.arange(32) % 2
    assert gradient_misalignment(model, x, y, 0.3, Linf()).item() == pytest.approx(0.0, abs=1e-5)


def test_misalignment_is_positive_and_trains_the_weights(train_subset):
    torch.manual_seed(0)
    model = create("cnn-small")
    x, y = train_subset[0][:64], train_subset[1][:64]
    value = gradient_misalignment(model, x, y, 0.3, Linf())
    assert 0.01 < value.item() <= 2
    assert all(p.grad is None for p in model.parameters())
    value.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_misalignment_ignores_samples_without_gradient():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.zeros(10))

        def forward(self, x):
            return self.bias.expand(len(x), 10) + 0 * x.flatten(1)[:, :10]

    value = gradient_misalignment(Constant(), torch.rand(4, 1, 28, 28), torch.arange(4), 0.3, Linf())
    assert value.item() == 0 and torch.isfinite(value)


def test_gradalign_with_weight_zero_is_fgsm_training(train_subset):
    x, y = train_subset[0][:64], train_subset[1][:64]
    model = create("cnn-small")
    loss, metrics = GradAlign(eps=EPS, align_weight=0.0)(model, x, y)
    fgsm = (x + EPS * _input_gradient(model, x, y).sign()).clamp(0, 1)
    assert loss.item() == pytest.approx(F.cross_entropy(model(fgsm), y).item(), rel=1e-5)
    assert metrics["misalignment"] > 0
    weighted, _ = GradAlign(eps=EPS, align_weight=1.0)(model, x, y)
    assert weighted.item() > loss.item()


@pytest.mark.parametrize("objective", [NFGSM(eps=EPS), GradAlign(eps=EPS, align_weight=0.5)], ids=lambda o: o.name)
def test_objective_lowers_its_loss_and_raises_robust_accuracy_over_standard_training(objective, train_subset,
                                                                                   test_subset):
    x, y = test_subset[0][:300], test_subset[1][:300]
    history = []
    standard = train_cnn_small(Standard(), train_subset)
    robust = train_cnn_small(objective, train_subset, on_epoch_end=lambda epoch, record: history.append(record))
    losses = [r["train"]["loss"] for r in history]
    assert losses[-1] < 0.8 * losses[0], losses
    before, after = robust_accuracy(standard, x, y), robust_accuracy(robust, x, y)
    assert after > before + 0.1, (objective.name, before, after)
    assert (robust(x).argmax(1) == y).float().mean().item() > 0.7


class Stop(Exception):
    pass


def _stop(epoch, record):
    raise Stop


def test_resumed_n_fgsm_run_equals_uninterrupted(train_subset, tmp_path):
    data = (train_subset[0][:256], train_subset[1][:256])
    whole = train_cnn_small(NFGSM(eps=EPS), data, epochs=2, out=tmp_path / "whole")
    with pytest.raises(Stop):
        train_cnn_small(NFGSM(eps=EPS), data, epochs=2, out=tmp_path / "split", on_epoch_end=_stop)
    resumed = train_cnn_small(NFGSM(eps=EPS), data, epochs=2, seed=0, out=tmp_path / "split", resume=True)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_attack_part_runs_in_eval_mode_and_leaves_no_weight_gradients(train_subset):
    modes = []
    model = create("cnn-small").train()
    model.register_forward_pre_hook(lambda module, inputs: modes.append(module.training))
    x, y = train_subset[0][:32], train_subset[1][:32]
    for objective in (NFGSM(eps=EPS), GradAlign(eps=EPS)):
        modes.clear()
        loss, _ = objective(model, x, y)
        assert modes[0] is False and modes[-1] is True and model.training
        assert all(p.grad is None for p in model.parameters())
        loss.backward()
        assert all(p.grad is not None for p in model.parameters())
        model.zero_grad(set_to_none=True)


def test_settings_are_checked_and_recorded():
    with pytest.raises(ValueError, match="noise"):
        NFGSM(noise=-1)
    with pytest.raises(ValueError, match="align_weight"):
        GradAlign(align_weight=-0.5)
    with pytest.raises(ValueError, match="alpha"):
        NFGSM(alpha=0.0)
    assert {"n-fgsm", "grad-align"} <= set(OBJECTIVES)
    described = get_objective("n-fgsm", eps=0.2, noise=3.0, alpha=0.1).describe()
    assert described["noise_ratio"] == 3.0 and described["alpha_ratio"] == pytest.approx(0.5)
    assert get_objective("grad-align", align_weight=0.2).describe()["align_weight"] == 0.2
