"""JSMA (L0, targeted, the saliency map on pairs of features): the pair it picks, the budget gamma, the targets,
the direction of theta, and success on the shipped mnist/cnn-small."""

from __future__ import annotations

import pytest
import torch

from alva.attacks import JSMA, AttackInputError
from alva.attacks.jsma import saliency_pairs
from alva.attacks.sparse_rs import changed_pixels


def test_saliency_picks_the_pair_that_raises_the_target_and_lowers_the_others():
    a = torch.tensor([[1.0, 2.0, 0.5, 5.0, -1.0]])
    b = torch.tensor([[-1.0, -2.0, 1.0, 3.0, -9.0]])
    domain = torch.tensor([[True, True, True, True, True]])
    pair, found = saliency_pairs(a, b, domain)
    # (3, 4): a = 4 > 0, b = -6 < 0, score 24; then (1, 4): 11 and (0, 1): 9; (1, 3) has a = 7 but b = 1 > 0.
    assert found.item() and sorted(pair[0].tolist()) == [3, 4]
    domain[0, 4] = False
    pair, _ = saliency_pairs(a, b, domain)
    assert sorted(pair[0].tolist()) == [0, 1]
    pair, found = saliency_pairs(a, b, torch.tensor([[False, False, True, False, False]]))
    assert not found.item()


def test_jsma_reaches_random_targets_within_its_budget(cnn_small, attack_batch):
    """20 images: measured 0.83 success on 100 images with gamma 0.1, median 40 changed pixels."""
    x, y = attack_batch[0][::10], attack_batch[1][::10]
    result = JSMA(cnn_small, theta=1.0, gamma=0.1, seed=0)(x, y)
    assert result.target is not None and (result.target != y).all()
    with torch.no_grad():
        assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) == result.target)
    assert (changed_pixels(x, result.x_adv) <= int(0.1 * 784 / 2) * 2).all()
    assert (result.x_adv >= x).all() and result.x_adv.max() <= 1
    assert result.success.double().mean() >= 0.6


def test_jsma_with_negative_theta_only_darkens_and_takes_given_targets(cnn_small, attack_batch):
    x, y = attack_batch[0][::20], attack_batch[1][::20]
    target = (y + 3) % 10
    result = JSMA(cnn_small, theta=-1.0, gamma=0.05, seed=0)(x, y, target)
    assert torch.equal(result.target, target)
    assert (result.x_adv <= x).all() and result.x_adv.min() >= 0
    assert (result.x_adv != x).any()


def test_jsma_needs_a_target_rule_and_a_nonzero_theta(cnn_small):
    with pytest.raises(AttackInputError, match="targeted"):
        JSMA(cnn_small, target=None)
    with pytest.raises(AttackInputError, match="theta"):
        JSMA(cnn_small, theta=0.0)
