"""Sanity checks: each one fires on a model masked on purpose, and all stay silent on the shipped
``mnist/cnn-small``; "black-box beats white-box" at AutoAttack's threshold of 0.2% of the points."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from alva.data import fixed_subset
from alva.evaluation.sanity import (
    SanityWarning,
    check_black_box,
    check_eps_growth,
    check_gradients,
    check_randomness,
    check_unbounded,
    run_sanity_checks,
)
from alva.evaluation.strong import strong_evaluation

CORE = ["apgd-ce", "apgd-t", "square"]
SMALL = {"apgd-ce": {"steps": 10}, "apgd-t": {"steps": 5, "n_target_classes": 3}, "square": {"n_queries": 300}}




@pytest.fixture(scope="module")
def batch(mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    """60 MNIST test images (6 per class, seed 0)."""
    return fixed_subset(*mnist_test, 60, seed=0)


class Binarized(nn.Module):
    """Rounds the input to {0, 1} first (a quantising "defence"): the gradient is zero everywhere, and
    perturbations below 0.5 change nothing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.round())


class NanGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


class NanGradientModel(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(NanGradient.apply(x))


class NoGradient(nn.Module):
    """Outputs the model's logits but gives no gradient (a stop-gradient "defence"): gradient attacks are
    blind, a score-based attack is not."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).detach() + 0 * x.reshape(len(x), -1).sum(1, keepdim=True)


class Reversed(nn.Module):
    """The model's logits with the gradient pointing the wrong way: attacks make the points more confident."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.model(x)
        return z.detach() - (z - z.detach())


class Random(nn.Module):
    """Dropout that stays on in eval mode, or Gaussian noise on the logits."""

    def __init__(self, model: nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "dropout":
            return self.model(nn.functional.dropout(x, 0.1, training=True))
        z = self.model(x)
        return z + 0.5 * torch.randn_like(z)


# --- silent on the shipped model ---------------------------------------------------------------------------

def test_all_checks_are_silent_on_cnn_small(cnn_small, batch):
    x, y = batch
    result = strong_evaluation(cnn_small, x, y, 0.3, attacks=CORE, options=SMALL, progress=False, sanity=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SanityWarning)
        assert run_sanity_checks(cnn_small, x, y, 0.3, table=result.table, n_total=result.n) == []
        assert run_sanity_checks(cnn_small, x, y, 2.0, "l2") == []
        assert run_sanity_checks(cnn_small, x, y, 0.1) == []


# --- each check fires on its masked model ------------------------------------------------------------------

@pytest.mark.parametrize("make, words", [(Binarized, "exactly zero"), (NanGradientModel, "NaN")])
def test_gradient_check_fires_on_zero_and_nan_gradients(cnn_small, batch, make, words):
    x, y = batch
    messages = check_gradients(make(cnn_small), x, y)
    assert len(messages) == 1 and "gradient masking" in messages[0] and words in messages[0]
    assert f"{len(x)} of {len(x)}" in messages[0]
    assert check_gradients(cnn_small, x, y) == []


def test_gradient_check_ignores_a_saturated_cross_entropy(cnn_small, batch):
    """Logits times 1000 zero the cross-entropy gradient; the margin's is still there: no masking."""
    x, y = batch

    class Scaled(nn.Module):
        def forward(self, x):
            return 1000 * cnn_small(x)

    assert check_gradients(Scaled(), x, y) == []


@pytest.mark.filterwarnings("ignore:gradient masking|accuracy does not fall|unbounded attack fails:"
                            "alva.evaluation.sanity.SanityWarning")
def test_black_box_check_fires_when_square_breaks_what_apgd_could_not(cnn_small, batch):
    x, y = batch
    with pytest.warns(SanityWarning, match="black-box beats white-box"):
        result = strong_evaluation(NoGradient(cnn_small), x, y, 0.3, attacks=CORE, options=SMALL, progress=False)
    square = result.table[-1]
    assert square["attack"] == "square" and square["broken"] > 0.5 * len(x)
    masked = [m for m in result.warnings if "black-box beats white-box" in m]
    assert len(masked) == 1 and f"broke {square['broken']} of {len(x)} points" in masked[0]


class MaskedOn(nn.Module):
    """The model with its gradient cut on the samples listed (a defence that masks only some inputs)."""

    def __init__(self, model: nn.Module, masked: torch.Tensor) -> None:
        super().__init__()
        self.model, self.masked = model, masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hit = (x[:, None] - self.masked[None]).reshape(len(x), len(self.masked), -1).abs().amax(2).amin(1) <= 0.3 + 1e-6
        z = self.model(x)
        return torch.where(hit[:, None], z.detach(), z)


def test_black_box_check_fires_above_autoattacks_two_per_mille(cnn_small, mnist_test):
    """APGD breaks the points of cnn-small at eps 0.3, except 3 of 1000 whose gradient is cut: Square breaks
    those, 0.3% of the points, above AutoAttack's 0.2%, and the check says so with the count."""
    x, y = fixed_subset(*mnist_test, 1000, seed=0)
    masked = x[:3]
    small = {"apgd-ce": {"steps": 5}, "square": {"n_queries": 300}}
    result = strong_evaluation(MaskedOn(cnn_small, masked), x, y, 0.3, attacks=["apgd-ce", "square"],
                               options=small, progress=False, sanity=False)
    assert result.table[-1]["broken"] == 3
    messages = check_black_box(result.table, result.n)
    assert len(messages) == 1 and "square broke 3 of 1000 points (0.30%" in messages[0]
    assert "0.20%" in messages[0] and "apgd-ce" in messages[0]
    # 2 of 1000 is within the tolerance; with no white-box attack before it, it stays silent
    table = [{"attack": "clean", "broken": 0}, {"attack": "apgd-ce", "broken": 50}, {"attack": "square", "broken": 2}]
    assert check_black_box(table, 1000) == []
    assert len(check_black_box(table[:2] + [{"attack": "fab-t", "broken": 0}, {"attack": "square", "broken": 3}],
                               1000)) == 1
    assert check_black_box([{"attack": "square", "broken": 40}], 100) == []


def test_black_box_check_is_silent_on_cnn_small_where_square_still_has_points(cnn_small, mnist_test):
    """At eps 0.1 about 30% of the points withstand APGD-CE and APGD-T; Square, run on all of them, breaks
    none beyond AutoAttack's 0.2%."""
    x, y = fixed_subset(*mnist_test, 200, seed=0)
    result = strong_evaluation(cnn_small, x, y, 0.1, version="quick", progress=False, sanity=False)
    square = result.table[-1]
    assert square["attack"] == "square" and square["attacked"] > 0.2 * len(x)
    assert check_black_box(result.table, result.n) == []


def test_eps_check_fires_when_accuracy_does_not_fall(cnn_small, batch):
    x, y = batch
    messages = check_eps_growth(Binarized(cnn_small), x, y, 0.3)
    assert any("does not fall as eps grows" in m for m in messages)
    assert check_eps_growth(cnn_small, x, y, 0.3) == []


def test_eps_check_fires_when_accuracy_rises_with_eps():
    curve = [{"eps": 0.0, "acc": 0.99}, {"eps": 0.1, "acc": 0.40}, {"eps": 0.2, "acc": 0.55},
             {"eps": 1.0, "acc": 0.0}]
    messages = check_eps_growth(None, None, None, 0.1, curve=curve)
    assert len(messages) == 1 and "rises with eps" in messages[0] and "eps=0.2" in messages[0]
    assert check_eps_growth(None, None, None, 0.1, curve=[{"eps": 0.0, "acc": 0.9}, {"eps": 0.1, "acc": 0.91},
                                                         {"eps": 1.0, "acc": 0.0}]) == []


def test_unbounded_check_fires_when_gradients_mislead(cnn_small, batch):
    x, y = batch
    messages = check_unbounded(Reversed(cnn_small), x, y)
    assert len(messages) == 1 and "unbounded attack fails" in messages[0]
    assert check_unbounded(cnn_small, x, y) == []
    assert check_unbounded(cnn_small, x, y, "l2") == []


@pytest.mark.parametrize("kind", ["dropout", "noise"])
def test_randomness_check_fires_on_a_random_model(cnn_small, batch, kind):
    x, _ = batch
    messages = check_randomness(Random(cnn_small, kind), x)
    assert len(messages) == 1 and "randomness" in messages[0]
    assert check_randomness(cnn_small, x) == []


def test_run_sanity_checks_warns_and_returns_the_messages(cnn_small, batch):
    x, y = batch
    with pytest.warns(SanityWarning) as caught:
        messages = run_sanity_checks(Binarized(cnn_small), x, y, 0.3)
    assert [str(w.message) for w in caught] == messages
    assert {m.split(":")[0] for m in messages} == {"gradient masking", "accuracy does not fall as eps grows",
                                                    "unbounded attack fails"}


def test_eps_checks_without_a_model_or_the_figures_raise():
    with pytest.raises(ValueError, match="needs model, x and y, or the curve"):
        check_eps_growth(None, None, None, 0.3)
    with pytest.raises(ValueError, match="needs model, x and y, or the accuracy"):
        check_unbounded(None, torch.rand(2, 1, 4, 4), None)
    assert check_eps_growth(None, None, None, 0.3, curve=[{"eps": 0.0, "acc": 1.0}, {"eps": 0.3, "acc": 0.0}]) == []
