"""Expectation over transformation (``eot_iter``) on PGD, APGD and APGD-T: on a model with random input noise the
averaged gradient breaks more images than the single-pass one; on a deterministic model it changes nothing but
the query count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alva.attacks import APGD, PGD, APGDTargeted, AttackInputError


class GaussianInputNoise(nn.Module):
    """Adds fresh Gaussian noise of standard deviation ``sigma`` to the input at every forward pass."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x)


def expected_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int = 20) -> float:
    """Accuracy averaged over ``draws`` noise draws (torch's generator seeded, so it repeats)."""
    torch.manual_seed(123)
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).double().mean().item() for _ in range(draws)) / draws


def test_eot_pgd_breaks_a_noisy_model_that_plain_pgd_does_not(cnn_small, attack_batch):
    """100 images, sigma 0.5, eps 0.1, 5 steps: measured 0.46 (plain PGD) against 0.32 (eot_iter = 20)."""
    x, y = attack_batch[0][::2], attack_batch[1][::2]
    noisy = nn.Sequential(GaussianInputNoise(0.5), cnn_small)
    accuracies = {}
    for eot_iter in (1, 20):
        torch.manual_seed(0)  # the model's noise
        result = PGD(noisy, eps=0.1, steps=5, eot_iter=eot_iter, seed=0)(x, y)
        accuracies[eot_iter] = expected_accuracy(noisy, result.x_adv, y)
    assert accuracies[20] <= accuracies[1] - 0.08
    assert expected_accuracy(noisy, x, y) - accuracies[1] < 0.5  # plain PGD leaves most of the clean accuracy


@pytest.mark.parametrize("make", [
    lambda m, e: PGD(m, eps=0.1, steps=4, eot_iter=e, seed=0),
    lambda m, e: APGD(m, eps=0.1, steps=4, eot_iter=e, seed=0),
    lambda m, e: APGDTargeted(m, eps=0.1, steps=4, n_target_classes=1, eot_iter=e, seed=0),
])
def test_on_a_deterministic_model_eot_changes_only_the_queries(make, cnn_small, attack_batch):
    x, y = attack_batch[0][::10], attack_batch[1][::10]
    one, three = make(cnn_small, 1)(x, y), make(cnn_small, 3)(x, y)
    assert torch.equal(one.x_adv, three.x_adv) and torch.equal(one.success, three.success)
    # The clean pass and the final check are single passes; each step costs eot_iter passes.
    assert torch.equal(three.queries - 2, 3 * (one.queries - 2))


def test_eot_iter_must_be_a_positive_integer(cnn_small):
    with pytest.raises(AttackInputError, match="eot_iter"):
        PGD(cnn_small, eot_iter=0)
    with pytest.raises(AttackInputError, match="eot_iter"):
        APGD(cnn_small, eot_iter=1.5)
