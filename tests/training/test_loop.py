"""fit(): it learns, it is seeded, and a resumed run ends exactly where an uninterrupted one does, also with an
objective that owns its optimisers."""

from __future__ import annotations

import math

import pytest
import torch

from alva.data import fixed_subset
from alva.evaluation.accuracy import accuracy
from alva.models import create
from alva.tracking import load_checkpoint, read_metrics
from alva.training import ManualObjective, Objective, Standard, TrainingDiverged, TrainSettings, fit, learning_rate
from alva.training.loop import CHECKPOINT


@pytest.fixture(scope="module")
def small_train(train_subset):
    """1000 training images, 100 per class."""
    return fixed_subset(*train_subset, 1000, seed=1)


def _model(name: str = "maxout", init_seed: int = 0):
    torch.manual_seed(init_seed)
    return create(name)


def _assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _differs(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return any(not torch.equal(sa[key], sb[key]) for key in sa)


class Stop(Exception):
    pass


def _stop_after(epoch_to_stop: int):
    def hook(epoch, record):
        if epoch == epoch_to_stop:
            raise Stop

    return hook


def test_fit_learns(train_subset, test_subset):
    model = _model("cnn-small")
    before = accuracy(model, *test_subset)
    settings = TrainSettings(epochs=2, batch_size=64, lr=2e-3, seed=0)
    history = fit(model, train_subset, settings, eval_data=test_subset, progress=False)
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[1]["train"]["loss"] < history[0]["train"]["loss"] < math.log(10)
    after = accuracy(model, *test_subset)
    assert before < 0.3
    assert after > 0.8
    assert history[-1]["eval"]["clean_acc"] == pytest.approx(after)
    assert all(r["lr"] == settings.lr for r in history)


@pytest.mark.parametrize("optimizer, schedule", [("adam", "constant"), ("sgd", "cosine")])
def test_same_seed_gives_identical_weights(small_train, optimizer, schedule):
    settings = TrainSettings(epochs=1, batch_size=50, lr=0.01, optimizer=optimizer, schedule=schedule, seed=3)
    runs = []
    # fit seeds everything itself: the global RNG state before it does not matter.
    for global_seed in (11, 12):
        model = _model()
        torch.manual_seed(global_seed)
        fit(model, small_train, settings, progress=False)
        runs.append(model)
    _assert_same_weights(*runs)

    other = _model()
    fit(other, small_train, TrainSettings(**{**settings.__dict__, "seed": 4}), progress=False)
    assert _differs(other, runs[0])


@pytest.mark.parametrize("optimizer, schedule", [("adam", "constant"), ("sgd", "cosine")])
def test_resume_equals_uninterrupted(tmp_path, small_train, test_subset, optimizer, schedule):
    settings = TrainSettings(epochs=2, batch_size=50, lr=0.01, optimizer=optimizer, schedule=schedule, seed=5)
    evaluation = fixed_subset(*test_subset, 200, seed=0)

    whole = _model()
    full_history = fit(whole, small_train, settings, out=tmp_path / "whole", eval_data=evaluation,
                       progress=False)

    out = tmp_path / "split"
    first = _model()
    with pytest.raises(Stop):
        fit(first, small_train, TrainSettings(**settings.__dict__), out=out, eval_data=evaluation,
            progress=False, on_epoch_end=_stop_after(1))
    assert load_checkpoint(out / CHECKPOINT)["epochs_done"] == 1
    assert _differs(first, whole)

    resumed = _model(init_seed=123)  # a fresh model: everything comes from the checkpoint
    history = fit(resumed, small_train, TrainSettings(**settings.__dict__), out=out, resume=True,
                  eval_data=evaluation, progress=False)
    assert [r["epoch"] for r in history] == [2]
    _assert_same_weights(resumed, whole)

    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert [r["epoch"] for r in records] == [1, 2]
    for got, want in zip(records, read_metrics(tmp_path / "whole" / "metrics.jsonl"), strict=True):
        assert got["train"] == want["train"] and got["eval"] == want["eval"] and got["lr"] == want["lr"]
    assert history[0]["train"] == full_history[1]["train"]
    assert load_checkpoint(out / CHECKPOINT)["epochs_done"] == 2


def test_resume_of_a_finished_run_does_nothing(tmp_path, small_train):
    settings = TrainSettings(epochs=1, batch_size=100, seed=0)
    model = _model("softmax")
    fit(model, small_train, settings, out=tmp_path, progress=False)
    again = _model("softmax", init_seed=9)
    assert fit(again, small_train, settings, out=tmp_path, resume=True, progress=False) == []
    _assert_same_weights(again, model)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


def test_resume_without_checkpoint_starts_from_scratch(tmp_path, small_train):
    settings = TrainSettings(epochs=1, batch_size=100, seed=0)
    a, b = _model("softmax"), _model("softmax")
    fit(a, small_train, settings, progress=False)
    history = fit(b, small_train, settings, out=tmp_path, resume=True, progress=False)
    assert len(history) == 1
    _assert_same_weights(a, b)


@pytest.mark.parametrize("change", [{"lr": 0.02}, {"batch_size": 64}, {"seed": 1}, {"optimizer": "sgd"},
                                    {"epochs": 3}])
def test_resume_with_changed_settings_raises(tmp_path, small_train, change):
    base = dict(epochs=2, batch_size=100, lr=0.01, seed=0)
    with pytest.raises(Stop):
        fit(_model("softmax"), small_train, TrainSettings(**base), out=tmp_path, progress=False,
            on_epoch_end=_stop_after(1))
    name = next(iter(change))
    with pytest.raises(ValueError, match=name):
        fit(_model("softmax"), small_train, TrainSettings(**{**base, **change}), out=tmp_path, resume=True,
            progress=False)
    # The checkpoint is untouched by the refused resume.
    assert load_checkpoint(tmp_path / CHECKPOINT)["epochs_done"] == 1


class Scaled(Standard):
    name = "scaled"


def test_resume_with_another_objective_raises(tmp_path, small_train):
    settings = TrainSettings(epochs=2, batch_size=100, seed=0)
    with pytest.raises(Stop):
        fit(_model("softmax"), small_train, settings, out=tmp_path, progress=False,
            on_epoch_end=_stop_after(1))
    with pytest.raises(ValueError, match="objective"):
        fit(_model("softmax"), small_train, settings, objective=Scaled(), out=tmp_path, resume=True,
            progress=False)


def test_resume_needs_an_output_folder(small_train):
    with pytest.raises(ValueError, match="out"):
        fit(_model("softmax"), small_train, TrainSettings(epochs=1), resume=True, progress=False)


class NaNAfter(Objective):
    """Cross-entropy until ``epoch``, then NaN."""

    name = "nan-after"

    def __init__(self, epoch: int) -> None:
        self.nan_epoch, self.epoch = epoch, 0

    def start_epoch(self, epoch, epochs):
        self.epoch = epoch

    def __call__(self, model, x, y):
        loss, metrics = Standard()(model, x, y)
        return (loss * float("nan") if self.epoch >= self.nan_epoch else loss), metrics


def test_nan_loss_raises_training_diverged(small_train):
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        fit(_model("softmax"), small_train, TrainSettings(epochs=1), objective=NaNAfter(0), progress=False)


def test_divergence_keeps_the_last_good_checkpoint(tmp_path, small_train):
    model = _model("softmax")
    with pytest.raises(TrainingDiverged, match="epoch 2"):
        fit(model, small_train, TrainSettings(epochs=2, batch_size=100), objective=NaNAfter(1), out=tmp_path,
            progress=False)
    state = load_checkpoint(tmp_path / CHECKPOINT)
    assert state["epochs_done"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert [r["epoch"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1]


def test_huge_learning_rate_diverges(small_train):
    with pytest.raises(TrainingDiverged):
        fit(_model("mlp"), small_train, TrainSettings(epochs=1, batch_size=50, lr=1e10, optimizer="sgd"),
            progress=False)


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"epochs": -1}, {"batch_size": 0}, {"lr": 0.0}, {"lr": -0.1},
                                 {"lr": float("nan")}, {"optimizer": "rmsprop"}, {"schedule": "step"}])
def test_settings_reject_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainSettings(**bad)


def test_learning_rate_schedules():
    constant = TrainSettings(lr=0.1)
    assert {learning_rate(constant, s, 100) for s in range(100)} == {0.1}
    cosine = TrainSettings(lr=0.1, schedule="cosine")
    values = [learning_rate(cosine, s, 100) for s in range(101)]
    assert values[0] == pytest.approx(0.1)
    assert values[50] == pytest.approx(0.05)
    assert values[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


class TwoOptimizers(ManualObjective):
    """A user's objective that owns two optimisers: Adam on the model's cross-entropy, SGD on a temperature."""

    name = "two-optimizers"

    def __init__(self, momentum: float = 0.9) -> None:
        self.momentum = momentum
        self.temperature = torch.nn.Linear(1, 1, bias=False)

    def setup(self, model, train_data, settings, device):
        self.model = model
        torch.nn.init.ones_(self.temperature.weight)
        self.adam = torch.optim.Adam(model.parameters(), lr=settings.lr)
        self.sgd = torch.optim.SGD(self.temperature.parameters(), lr=0.01, momentum=self.momentum)

    def start_epoch(self, epoch, epochs):
        self.model.train()

    def training_step(self, x, y, batch):
        logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        self.adam.zero_grad()
        loss.backward()
        self.adam.step()
        scaled = torch.nn.functional.cross_entropy(logits.detach() * self.temperature.weight, y)
        self.sgd.zero_grad()
        scaled.backward()
        self.sgd.step()
        return {"loss": loss.item(), "scaled_loss": scaled.item()}, len(x)

    def sample_grid(self, model, epoch):
        return torch.rand(1, 8, 8), f"epoch {epoch + 1}"

    def parts(self):
        return {"model": self.model, "temperature": self.temperature, "adam": self.adam, "sgd": self.sgd}

    def describe(self):
        return {"name": self.name, "momentum": self.momentum}


def test_an_objective_with_its_own_optimizers_resumes_exactly(tmp_path, small_train):
    settings = TrainSettings(epochs=2, batch_size=100, lr=0.01, seed=2)
    whole, whole_objective = _model("softmax"), TwoOptimizers()
    fit(whole, small_train, settings, objective=whole_objective, out=tmp_path / "whole", progress=False)
    out = tmp_path / "split"
    with pytest.raises(Stop):
        fit(_model("softmax"), small_train, settings, objective=TwoOptimizers(), out=out, progress=False,
            on_epoch_end=_stop_after(1))
    state = load_checkpoint(out / CHECKPOINT)
    assert {"model", "temperature", "adam", "sgd"} <= set(state) and state["objective"]["momentum"] == 0.9
    resumed, objective = _model("softmax", init_seed=5), TwoOptimizers()
    history = fit(resumed, small_train, settings, objective=objective, out=out, resume=True, progress=False)
    assert [r["epoch"] for r in history] == [2] and "scaled_loss" in history[0]["train"]
    _assert_same_weights(resumed, whole)
    assert torch.equal(objective.temperature.weight, whole_objective.temperature.weight)
    assert objective.temperature.weight.item() != 1.0
    assert (out / "samples" / "epoch_002.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="settings differ"):
        fit(_model("softmax"), small_train, settings, objective=TwoOptimizers(momentum=0.5), out=out, resume=True,
            progress=False)
