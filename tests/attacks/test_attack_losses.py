"""Attack objectives (alva.attacks.losses): cross-entropy and the Carlini-Wagner margin, and is_success."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alva.attacks import LOSSES, cross_entropy, is_success, margin
from alva.attacks.losses import get_loss


@pytest.fixture(scope="module")
def real_logits(cnn_small, attack_batch) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = attack_batch
    with torch.no_grad():
        return cnn_small(x), y


def random_logits(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3


def test_registry_and_aliases():
    assert LOSSES["ce"] is cross_entropy and LOSSES["margin"] is margin
    for alias in ("cw", "CW", "margin", "Margin"):
        assert get_loss(alias) is margin
    for alias in ("ce", "CE", "cross-entropy", "xent"):
        assert get_loss(alias) is cross_entropy

    def own(logits, labels, targeted):
        return logits.sum(1)

    assert get_loss(own) is own


@pytest.mark.parametrize("seed", range(5))
def test_margin_is_positive_exactly_when_misclassified(seed):
    logits = random_logits(500, 10, seed)
    labels = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(100 + seed))
    m = margin(logits, labels, targeted=False)
    assert m.shape == (500,)
    assert torch.equal(m > 0, logits.argmax(1) != labels)
    # The value is the gap between the best other logit and the true one.
    others = logits.clone()
    others[torch.arange(500), labels] = -torch.inf
    torch.testing.assert_close(m, others.max(1).values - logits[torch.arange(500), labels])


@pytest.mark.parametrize("seed", range(5))
def test_targeted_margin_is_positive_exactly_when_classified_as_the_target(seed):
    logits = random_logits(500, 10, seed)
    target = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(200 + seed))
    m = margin(logits, target, targeted=True)
    assert torch.equal(m > 0, logits.argmax(1) == target)
    torch.testing.assert_close(m, -margin(logits, target, targeted=False))


def test_margin_on_the_shipped_model(real_logits):
    logits, y = real_logits
    m = margin(logits, y, targeted=False)
    wrong = logits.argmax(1) != y
    assert torch.equal(m > 0, wrong)
    assert (m < 0).sum() >= 0.95 * len(y)  # the model is right on most of the batch


def test_margin_of_a_tie_is_zero():
    logits = torch.tensor([[1.0, 1.0, 0.0], [2.0, 0.5, 2.0]])
    labels = torch.tensor([0, 2])
    assert torch.equal(margin(logits, labels, targeted=False), torch.zeros(2))


def test_cross_entropy_matches_torch(real_logits):
    logits, y = real_logits
    expected = F.cross_entropy(logits, y, reduction="none")
    torch.testing.assert_close(cross_entropy(logits, y, targeted=False), expected)
    torch.testing.assert_close(cross_entropy(logits, y, targeted=True), -expected)
    # Untargeted cross-entropy is what an attack raises: it is larger on misclassified samples.
    wrong = logits.argmax(1) != y
    assert expected[wrong].min() > expected[~wrong].median()


def test_is_success(real_logits):
    logits, y = real_logits
    pred = logits.argmax(1)
    assert torch.equal(is_success(logits, y, targeted=False), pred != y)
    assert torch.equal(is_success(logits, pred, targeted=True), torch.ones(len(y), dtype=torch.bool))
    assert not is_success(logits, pred, targeted=False).any()


def test_losses_give_gradients_towards_success(real_logits):
    """A small step along the gradient of either loss raises it on (nearly) every sample."""
    logits, y = real_logits
    for loss in (cross_entropy, margin):
        z = logits.double().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(z, y, False).sum(), z)
        direction = grad / grad.norm(dim=1, keepdim=True)
        after = loss(z.detach() + 0.1 * direction, y, False)
        assert (after > loss(z.detach(), y, False)).double().mean() > 0.95
