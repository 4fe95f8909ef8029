"""Multi-label training: the asymmetric loss (Ridnik et al. 2021) against its formula and BCE, the objectives,
and runs through fit, train_classifier and `alva train` that learn, resume and refuse mismatches."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from alva.cli.main import main
from alva.data import make_multilabel_mnist
from alva.evaluation.accuracy import predict_logits
from alva.evaluation.multilabel import multilabel_metrics
from alva.models import create, load
from alva.tracking import read_metrics
from alva.training import (
    OBJECTIVES,
    AsymmetricLoss,
    ClassifierRun,
    MultiLabelBCE,
    Objective,
    Standard,
    TrainSettings,
    asymmetric_loss,
    fit,
    get_objective,
    multilabel_bce,
    train_classifier,
)


def _batch(n: int = 16, labels: int = 10, seed: int = 0, scale: float = 4.0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, labels, generator=g, dtype=torch.float64) * scale
    targets = (torch.rand(n, labels, generator=g) < 0.3).double()
    return logits, targets


def _bce_per_sample(logits, targets):
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_asl_with_zero_gammas_and_clip_is_bce(reduction):
    logits, targets = _batch(scale=10.0)
    logits.requires_grad_(True)
    asl = asymmetric_loss(logits, targets, gamma_neg=0, gamma_pos=0, clip=0, reduction=reduction)
    expected = _bce_per_sample(logits, targets)
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    torch.testing.assert_close(asl, expected)
    torch.testing.assert_close(multilabel_bce(logits, targets, reduction=reduction), expected)
    (grad_asl,) = torch.autograd.grad(asl.sum(), logits)
    (grad_bce,) = torch.autograd.grad(expected.sum(), logits)
    torch.testing.assert_close(grad_asl, grad_bce)


def test_asl_matches_the_papers_formula():
    logits, targets = _batch(seed=1)
    gamma_neg, gamma_pos, m = 4.0, 1.0, 0.05
    p = torch.sigmoid(logits)
    p_m = (p - m).clamp_min(0)
    positive = (1 - p) ** gamma_pos * torch.log(p)
    negative = p_m ** gamma_neg * torch.log(1 - p_m)
    expected = -(targets * positive + (1 - targets) * negative).sum(1)
    torch.testing.assert_close(asymmetric_loss(logits, targets, gamma_neg, gamma_pos, m, reduction="none"),
                               expected)
    assert asymmetric_loss(logits, targets) == pytest.approx(expected.mean().item())


def _single(logit: float, target: float, **asl) -> tuple[float, float]:
    z, y = torch.tensor([[logit]], dtype=torch.float64), torch.tensor([[target]], dtype=torch.float64)
    return asymmetric_loss(z, y, **asl).item(), multilabel_bce(z, y).item()


def test_asl_down_weights_easy_negatives_more_than_hard_ones():
    # A negative below the margin (p = 0.018 < 0.05) costs nothing: probability shifting discards it.
    assert _single(-4.0, 0.0)[0] == 0.0
    # Easy negatives lose more of their BCE weight than hard ones.
    easy_asl, easy_bce = _single(-1.5, 0.0)  # p = 0.18
    hard_asl, hard_bce = _single(2.0, 0.0)  # p = 0.88
    assert 0 < easy_asl / easy_bce < hard_asl / hard_bce < 1
    assert easy_asl / easy_bce < 1e-2
    # Positives are focused less (gamma_pos = 1 < gamma_neg = 4): an equally easy positive keeps more weight.
    pos_asl, pos_bce = _single(1.5, 1.0)
    assert pos_asl / pos_bce == pytest.approx(1 - torch.sigmoid(torch.tensor(1.5)).item())
    assert pos_asl / pos_bce > easy_asl / easy_bce
    # Each part on its own: the clip alone and the focusing alone already lower an easy negative's loss.
    assert _single(-1.5, 0.0, gamma_neg=0, gamma_pos=0, clip=0.05)[0] < easy_bce
    assert _single(-1.5, 0.0, gamma_neg=4, gamma_pos=0, clip=0.0)[0] < easy_bce


def test_asl_gradient_is_finite_for_extreme_logits_and_fractional_gammas():
    logits = torch.tensor([[-80.0, -3.0, 0.0, 3.0, 80.0]] * 2, requires_grad=True)
    targets = torch.tensor([[0.0, 0.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0]])
    for gammas in [(4.0, 1.0, 0.05), (0.5, 0.5, 0.05), (0.5, 0.5, 0.0), (0.0, 0.0, 0.0)]:
        loss = asymmetric_loss(logits, targets, *gammas)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), gammas


@pytest.mark.parametrize("bad, match", [({"gamma_neg": -1}, "gammas"), ({"clip": 1.0}, "clip"),
                                        ({"clip": -0.1}, "clip"), ({"reduction": "max"}, "reduction")])
def test_asl_rejects_bad_settings(bad, match):
    with pytest.raises(ValueError, match=match):
        asymmetric_loss(*_batch(), **bad)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="N x L"):
        asymmetric_loss(torch.zeros(4, 10), torch.zeros(4, 9))
    with pytest.raises(ValueError, match="N x L"):
        multilabel_bce(torch.zeros(10), torch.zeros(10))


def test_objectives_are_registered_and_describe_their_settings():
    assert OBJECTIVES["bce"] is MultiLabelBCE and OBJECTIVES["asl"] is AsymmetricLoss
    assert get_objective("bce").describe() == {"name": "bce"}
    assert get_objective("asl").describe() == {"name": "asl", "gamma_neg": 4.0, "gamma_pos": 1.0, "clip": 0.05}
    assert get_objective("asl", gamma_neg=2, clip=0).describe()["gamma_neg"] == 2.0
    assert get_objective("asl").task == "multilabel" and Standard().task == "multiclass"
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.5)


def test_objective_call_and_evaluate():
    torch.manual_seed(0)
    model = create("cnn-small", in_shape=(1, 56, 56))
    x, y = make_multilabel_mnist("test", 64, seed=0)
    for objective in (AsymmetricLoss(), MultiLabelBCE()):
        loss, metrics = objective(model, x, y)
        assert loss.ndim == 0 and loss.requires_grad
        assert set(metrics) == {"loss", "exact_match"} and 0 <= metrics["exact_match"] <= 1
        evaluation = objective.evaluate(model, x, y)
        assert set(evaluation) == {"map", "exact_match", "macro_f1", "hamming_acc"}
        full = multilabel_metrics(predict_logits(model, x), y)
        assert evaluation["map"] == full["map"] and evaluation["exact_match"] == full["exact_match"]
    assert MultiLabelBCE()(model, x, y)[0].item() == pytest.approx(multilabel_bce(model(x), y).item(), rel=1e-5)


class CountingEvaluation(Standard):
    name = "counting"

    def evaluate(self, model, x, y):
        return {"n": float(len(x))}


def test_fit_logs_the_objectives_evaluation(train_subset, test_subset):
    small = (train_subset[0][:200], train_subset[1][:200])
    history = fit(create("softmax"), small, TrainSettings(epochs=1), objective=CountingEvaluation(),
                  eval_data=test_subset, progress=False)
    assert history[0]["eval"] == {"n": 1000.0}
    assert Objective.evaluate(Standard(), create("softmax"), *test_subset).keys() == {"clean_acc"}


@pytest.fixture(scope="module")
def small_multilabel():
    """1500 training and 300 test grids."""
    return make_multilabel_mnist("train", 1500, seed=1), make_multilabel_mnist("test", 300, seed=1)


class Stop(Exception):
    pass


def _stop_after_first(epoch, record):
    if epoch == 1:
        raise Stop


@pytest.mark.parametrize("objective", [AsymmetricLoss(), MultiLabelBCE()], ids=["asl", "bce"])
def test_resume_equals_uninterrupted(tmp_path, small_multilabel, objective):
    train, test = small_multilabel
    settings = TrainSettings(epochs=2, batch_size=100, lr=2e-3, seed=1)

    def model():
        torch.manual_seed(0)
        return create("cnn-small", in_shape=(1, 56, 56))

    whole = model()
    fit(whole, train, settings, objective=objective, out=tmp_path / "whole", eval_data=test, progress=False)
    with pytest.raises(Stop):
        fit(model(), train, settings, objective=objective, out=tmp_path / "split", eval_data=test, progress=False,
            on_epoch_end=_stop_after_first)
    resumed = model()
    fit(resumed, train, settings, objective=objective, out=tmp_path / "split", resume=True, eval_data=test,
        progress=False)
    for key, value in whole.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    for got, want in zip(read_metrics(tmp_path / "split" / "metrics.jsonl"),
                         read_metrics(tmp_path / "whole" / "metrics.jsonl"), strict=True):
        assert got["train"] == want["train"] and got["eval"] == want["eval"]


def test_resume_refuses_other_asl_settings(tmp_path, small_multilabel):
    train, _ = small_multilabel
    settings = TrainSettings(epochs=2, batch_size=500)
    with pytest.raises(Stop):
        fit(create("softmax", in_shape=(1, 56, 56)), train, settings, objective=AsymmetricLoss(), out=tmp_path,
            progress=False, on_epoch_end=_stop_after_first)
    with pytest.raises(ValueError, match="gamma_neg"):
        fit(create("softmax", in_shape=(1, 56, 56)), train, settings, objective=AsymmetricLoss(gamma_neg=2),
            out=tmp_path, resume=True, progress=False)


@pytest.fixture(scope="module")
def multilabel_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multilabel") / "run"
    run = ClassifierRun(model="cnn-small", out=str(out), dataset="mnist-multilabel", train_size=3000, test_size=500,
                        settings=TrainSettings(epochs=2, batch_size=64, lr=2e-3, seed=0))
    model = train_classifier(run, progress=False, command="alva train --dataset mnist-multilabel")
    return out, model


def test_a_short_multilabel_run_learns_and_its_card_is_true(multilabel_run):
    out, model = multilabel_run
    info = json.loads((out / "model.json").read_text())
    assert info["task"] == "multilabel" and info["dataset"] == "mnist-multilabel"
    assert info["in_shape"] == [1, 56, 56] and info["num_classes"] == 10
    assert info["objective"] == AsymmetricLoss().describe()  # the data set's default objective
    assert info["train_size"] == 3000 and info["test_size"] == 500
    x, y = make_multilabel_mnist("test", 500, seed=0)
    metrics = multilabel_metrics(predict_logits(load(out), x), y)
    assert info["clean_test_map"] == pytest.approx(metrics["map"], abs=1e-9)
    assert info["clean_test_accuracy"] == pytest.approx(metrics["exact_match"])
    assert info["clean_test_macro_f1"] == pytest.approx(metrics["macro_f1"])
    # Chance: an AP about equal to the 25% share of positives per label; 2 epochs of 3000 grids is far above.
    assert metrics["map"] > 0.8
    record = read_metrics(out / "metrics.jsonl")[-1]
    assert record["eval"]["map"] == info["clean_test_map"]
    assert set(record["train"]) == {"loss", "exact_match"}


@pytest.mark.parametrize("dataset, objective", [("mnist-multilabel", "standard"), ("mnist", "asl"),
                                                ("mnist", "bce")])
def test_a_mismatched_objective_and_dataset_are_refused(tmp_path, dataset, objective):
    run = ClassifierRun(model="softmax", out=str(tmp_path), dataset=dataset, objective=objective, train_size=10,
                        test_size=10)
    with pytest.raises(ValueError, match="labels"):
        train_classifier(run, progress=False)
    assert not (tmp_path / "model.safetensors").exists()


def test_unknown_dataset_is_refused():
    with pytest.raises(ValueError, match="dataset"):
        ClassifierRun(dataset="cifar")


def test_cli_trains_a_multilabel_model(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train", "--dataset", "mnist-multilabel", "--model", "softmax", "--adv", "asl", "--gamma-neg", "2",
            "--epochs", "1", "--train-size", "300", "--test-size", "100", "--no-progress", "--out", str(out)]
    assert main(args) == 0
    assert "test mAP" in capsys.readouterr().out
    info = load(out).card
    assert info["objective"] == {"name": "asl", "gamma_neg": 2.0, "gamma_pos": 1.0, "clip": 0.05}
    assert main(["train", "--adv", "bce", "--clip", "0.1", "--out", str(tmp_path / "x")]) == 2
    assert "--adv asl" in capsys.readouterr().err
