"""Adversarial training objectives: each makes a small model more robust than standard training on the same
budget; the attacks inside training run in eval mode without weight gradients; the guard, early stopping and
the closed form of logistic regression do what they say."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from robust_training import EPS, robust_accuracy, train_cnn_small
from torch import nn

from alva.attacks import Linf
from alva.models import create
from alva.training import (
    TRADES,
    FastFGSM,
    FGSMMix,
    LogisticFGSM,
    PGDTraining,
    Standard,
    TrainSettings,
    fit,
    get_objective,
    learning_rate,
    logistic_fgsm_loss,
    perturb,
)
from alva.training.settings import COLLAPSE_RETRIES


@pytest.fixture(scope="module")
def standard_model(train_subset):
    return train_cnn_small(Standard(), train_subset)


@pytest.mark.parametrize("objective", [
    FGSMMix(eps=EPS), PGDTraining(eps=EPS, steps=5), FastFGSM(eps=EPS), TRADES(eps=EPS, steps=5, beta=3.0),
], ids=lambda o: o.name)
def test_objective_raises_robust_accuracy_over_standard_training(objective, train_subset, test_subset,
                                                                 standard_model):
    x, y = test_subset[0][:300], test_subset[1][:300]
    robust = train_cnn_small(objective, train_subset)
    before, after = robust_accuracy(standard_model, x, y), robust_accuracy(robust, x, y)
    assert after > before + 0.1, (objective.name, before, after)
    clean = (robust(x).argmax(1) == y).float().mean().item()
    assert clean > 0.7, (objective.name, clean)


class BatchNormNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 10))
        self.modes_seen: list[bool] = []

    def forward(self, x):
        self.modes_seen.append(self.training)
        return self.body(x)


@pytest.mark.parametrize("objective", [FGSMMix(eps=EPS), PGDTraining(eps=EPS, steps=3), FastFGSM(eps=EPS),
                                       TRADES(eps=EPS, steps=3)], ids=lambda o: o.name)
def test_attack_inside_training_uses_eval_mode_and_no_weight_gradients(objective, train_subset):
    torch.manual_seed(0)
    model = BatchNormNet().train()
    x, y = train_subset[0][:32], train_subset[1][:32]
    steps = getattr(objective, "steps", 1)
    loss, _ = objective(model, x, y)
    # The attack's forward passes ran in eval mode; only the final loss pass(es) in train mode.
    assert model.modes_seen.count(False) >= steps
    assert model.modes_seen[-1] is True and model.training
    assert all(p.grad is None for p in model.parameters())  # the attack left no weight gradients behind
    assert all(p.requires_grad for p in model.parameters())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_perturb_stays_in_eps_ball_and_bounds(test_subset, cnn_small_copy):
    x, y = test_subset[0][:64], test_subset[1][:64]
    x_adv = perturb(cnn_small_copy, x, y, 0.2, 0.05, 7, Linf(), random_start=True)
    assert (x_adv - x).abs().max() <= 0.2 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert robust_accuracy(cnn_small_copy, x_adv, y, eps=0.0) < (cnn_small_copy(x).argmax(1) == y).float().mean()


class InputRecorder(nn.Module):
    """A model that records the smallest and largest pixel of every input it sees."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x):
        self.seen.append((x.min().item(), x.max().item()))
        return self.model(x)


@pytest.mark.parametrize("clip_start", [False, True])
def test_fast_fgsm_takes_its_gradient_at_the_unclipped_start_unless_told_and_trains_on_images_in_bounds(
        test_subset, cnn_small_copy, clip_start):
    """Wong et al.'s random start is the image plus uniform noise, outside [0, 1] where the image is near 0 or 1;
    only the training example is projected into the ball and the bounds."""
    x, y = test_subset[0][:64], test_subset[1][:64]
    recorder = InputRecorder(cnn_small_copy)
    torch.manual_seed(0)
    objective = FastFGSM(eps=0.3, clip_start=clip_start)
    objective(recorder, x, y)
    (start_min, start_max), (example_min, example_max) = recorder.seen
    assert (start_min < -0.2 and start_max > 1.2) is not clip_start
    assert start_min >= 0 and start_max <= 1 or not clip_start
    assert example_min >= 0 and example_max <= 1
    assert objective.describe()["clip_start"] is clip_start


@pytest.fixture
def cnn_small_copy():
    import alva.models

    return alva.models.load("mnist/cnn-small")


def test_logistic_closed_form_equals_fgsm_training():
    torch.manual_seed(0)
    linear = nn.Linear(784, 1)
    x = torch.rand(50, 1, 28, 28)
    y = torch.randint(0, 2, (50,))
    eps = 0.25
    closed = logistic_fgsm_loss(linear.weight[0], linear.bias[0], x, 2 * y.float() - 1, eps)

    model = nn.Sequential(nn.Flatten(), linear)

    def bce(logits, labels):
        return F.binary_cross_entropy_with_logits(logits.squeeze(1), labels.float(), reduction="sum")

    x_fgsm = perturb(model, x, y, eps, eps, 1, Linf(), random_start=False, loss_fn=bce,
                     bounds=(-float("inf"), float("inf")))
    fgsm_loss = F.binary_cross_entropy_with_logits(model(x_fgsm).squeeze(1), y.float())
    assert torch.allclose(closed, fgsm_loss, atol=1e-6)
    g_closed = torch.autograd.grad(closed, linear.weight)[0]
    # FGSM training treats x_fgsm as a constant: its gradient equals the closed form's wherever no w_i is 0.
    g_fgsm = torch.autograd.grad(fgsm_loss, linear.weight)[0]
    assert torch.allclose(g_closed, g_fgsm, atol=1e-6)


def test_logistic_fgsm_objective_trains_3_against_7(train_subset, test_subset):
    def pair(data):
        x, y = data
        keep = (y == 3) | (y == 7)
        return x[keep], (y[keep] == 7).long()

    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 1))
    fit(model, pair(train_subset), TrainSettings(epochs=5, batch_size=32, lr=1e-2), objective=LogisticFGSM(0.1),
        progress=False)
    x, y = pair(test_subset)
    assert LogisticFGSM().evaluate(model, x, y)["clean_acc"] > 0.9


class Collapsing(FastFGSM):
    """A fast objective whose guard reports a collapse on its second check only (after the second epoch, or on
    the first try of epoch 2)."""

    def collapses(self, calls: int) -> bool:
        return calls == 2

    def check(self, model, x, y):
        self.calls = getattr(self, "calls", 0) + 1
        return {"check_pgd_acc": 1.0 / self.calls}, self.collapses(self.calls)


def test_guard_rolls_back_the_collapsed_epoch_and_stops(train_subset):
    data = (train_subset[0][:256], train_subset[1][:256])
    one_epoch = train_cnn_small(FastFGSM(eps=EPS), data, epochs=1)
    history = []
    torch.manual_seed(0)
    model = create("cnn-small")
    history = fit(model, data, TrainSettings(epochs=4, batch_size=64, lr=2e-3), objective=Collapsing(eps=EPS),
                  progress=False)
    assert len(history) == 2 and "stopped" in history[-1]
    for a, b in zip(one_epoch.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class AlwaysCollapsing(Collapsing):
    """A fast objective whose guard reports a collapse at every check after the first."""

    def collapses(self, calls: int) -> bool:
        return calls >= 2


class Stop(Exception):
    pass


def _train_with_retry(data, objective, epochs=3, **options):
    torch.manual_seed(0)
    model = create("cnn-small")
    settings = TrainSettings(epochs=epochs, batch_size=64, lr=2e-3, collapse_lr_factor=0.25)
    return model, fit(model, data, settings, objective=objective, progress=False, **options)


def test_guard_with_lr_factor_retrains_the_collapsed_epoch_at_a_lower_rate(train_subset, tmp_path):
    data = (train_subset[0][:256], train_subset[1][:256])
    model, history = _train_with_retry(data, Collapsing(eps=EPS), out=tmp_path / "whole")
    assert [r["epoch"] for r in history] == [1, 2, 3] and not any("stopped" in r for r in history)
    assert [len(r.get("retried", [])) for r in history] == [0, 1, 0]
    assert [r["lr"] for r in history] == pytest.approx([2e-3, 5e-4, 5e-4])

    # Stopped after epoch 2 and resumed: epoch 3 keeps the lowered rate (it is in the checkpoint).
    def stop_after_2(epoch, record):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        _train_with_retry(data, Collapsing(eps=EPS), out=tmp_path / "split", on_epoch_end=stop_after_2)
    resumed, rest = _train_with_retry(data, Collapsing(eps=EPS), out=tmp_path / "split", resume=True)
    assert [r["epoch"] for r in rest] == [3] and rest[0]["lr"] == pytest.approx(5e-4)
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_guard_with_lr_factor_stops_after_its_retries(train_subset):
    data = (train_subset[0][:256], train_subset[1][:256])
    one_epoch = train_cnn_small(FastFGSM(eps=EPS), data, epochs=1)
    model, history = _train_with_retry(data, AlwaysCollapsing(eps=EPS), epochs=4)
    assert len(history) == 2 and "stopped" in history[-1] and len(history[-1]["retried"]) == COLLAPSE_RETRIES
    for a, b in zip(one_epoch.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_guard_with_weight_average_rolls_back_to_the_saved_average(train_subset):
    data = (train_subset[0][:256], train_subset[1][:256])
    averaged = []
    for objective, epochs in ((FastFGSM(eps=EPS), 1), (Collapsing(eps=EPS), 4)):
        torch.manual_seed(0)
        model = create("cnn-small")
        fit(model, data, TrainSettings(epochs=epochs, batch_size=64, lr=2e-3, ema=0.9), objective=objective,
            progress=False)
        averaged.append(model)
    for a, b in zip(averaged[0].state_dict().values(), averaged[1].state_dict().values(), strict=True):
        assert torch.equal(a, b)


class Scripted(Standard):
    """Evaluation figures that peak at epoch 2."""

    values = [0.5, 0.9, 0.7, 0.6, 0.95]

    def evaluate(self, model, x, y):
        self.epoch = getattr(self, "epoch", -1) + 1
        return {"clean_acc": 0.0, "score": self.values[self.epoch]}


def test_early_stopping_keeps_the_best_epoch(train_subset, tmp_path):
    data = (train_subset[0][:256], train_subset[1][:256])
    two_epochs = train_cnn_small(Standard(), data, epochs=2)
    torch.manual_seed(0)
    model = create("cnn-small")
    seen = []
    history = fit(model, data, TrainSettings(epochs=5, batch_size=64, lr=2e-3, monitor="score", patience=2),
                  objective=Scripted(), eval_data=data, progress=False, out=tmp_path,
                  on_epoch_end=lambda epoch, record: seen.append(epoch))
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and "stopped" in history[-1]
    assert seen[-1] == 2  # the card is rewritten for the best epoch
    for a, b in zip(two_epochs.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


class ScriptedTie(Scripted):
    """Evaluation figures that peak at epoch 2 and tie it at epoch 3."""

    values = [0.5, 0.9, 0.9, 0.6, 0.95]


def test_early_stopping_keeps_the_later_of_tied_epochs_and_counts_patience_from_the_rise(train_subset, tmp_path):
    data = (train_subset[0][:256], train_subset[1][:256])
    three_epochs = train_cnn_small(Standard(), data, epochs=3)
    torch.manual_seed(0)
    model = create("cnn-small")
    history = fit(model, data, TrainSettings(epochs=5, batch_size=64, lr=2e-3, monitor="score", patience=2),
                  objective=ScriptedTie(), eval_data=data, progress=False, out=tmp_path)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and "at epoch 3" in history[-1]["stopped"]
    for a, b in zip(three_epochs.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_cyclic_learning_rate_peaks_at_two_fifths():
    settings = TrainSettings(lr=0.01, schedule="cyclic")
    rates = [learning_rate(settings, s, 100) for s in range(101)]
    assert rates[0] == 0 and rates[40] == pytest.approx(0.01) and rates[100] == pytest.approx(0.0)
    assert max(rates) == pytest.approx(0.01) and rates.index(max(rates)) == 40


def test_eps_ramp():
    objective = PGDTraining(eps=0.3, ramp_epochs=3)
    seen = []
    for epoch in range(5):
        objective.start_epoch(epoch, 5)
        seen.append(round(objective.current_eps, 6))
    assert seen == [0.1, 0.2, 0.3, 0.3, 0.3]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="eps"):
        PGDTraining(eps=-1)
    with pytest.raises(ValueError, match="mix"):
        FGSMMix(mix=2)
    with pytest.raises(ValueError, match="beta"):
        TRADES(beta=-1)
    with pytest.raises(ValueError, match="monitor"):
        TrainSettings(patience=2)
    with pytest.raises(ValueError, match="bounds"):
        TRADES(bounds=(1.0, 0.0))


class Recorder(nn.Module):
    """A linear classifier on 1 x 4 x 4 inputs that keeps the last batch it saw in train mode."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(16, 3)
        self.seen = None

    def forward(self, x):
        if self.training:
            self.seen = x.detach().clone()
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("objective", [TRADES, PGDTraining, FGSMMix, FastFGSM])
def test_adversarial_examples_stay_in_the_objectives_bounds(objective):
    """Inputs in [-1, 1] (all negative here): the examples keep within eps of x and inside the given bounds,
    instead of being clipped into [0, 1]."""
    x = -0.5 - 0.5 * torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 3
    model = Recorder().train()
    torch.manual_seed(1)
    objective(eps=0.1, bounds=(-1.0, 1.0))(model, x, y)
    x_adv = model.seen[-len(x):]
    assert x_adv.min() >= -1 and x_adv.max() <= -0.4 + 1e-6
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert (x_adv - x).abs().max() > 0.01


def test_the_registry_holds_every_objective():
    from alva.training import ADVERSARIAL_OBJECTIVES, FAST_GUARD_OBJECTIVES, OBJECTIVES, get_objective

    assert set(ADVERSARIAL_OBJECTIVES) | set(FAST_GUARD_OBJECTIVES) | {"standard", "bce", "asl"} == set(OBJECTIVES)
    assert isinstance(get_objective("trades", eps=0.2), TRADES)
    assert get_objective("trades", eps=0.2).describe() == get_objective("trades", eps=0.2, bounds=(0, 1)).describe()


@pytest.mark.parametrize("name", ["pgd", "fast", "trades", "n-fgsm", "grad-align"])
@pytest.mark.parametrize("alpha", [float("nan"), -0.1, 0.0, float("inf")])
def test_an_attack_step_that_is_not_a_positive_number_is_refused(name, alpha):
    with pytest.raises(ValueError, match="alpha"):
        get_objective(name, eps=0.3, alpha=alpha)
    assert get_objective(name, eps=0.3, alpha=0.15).describe()["alpha_ratio"] == pytest.approx(0.5)
