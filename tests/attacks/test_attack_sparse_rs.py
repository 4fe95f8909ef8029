"""Sparse-RS (L0, score-based): the pixel budget, the vertices of the box, the query budget, the targets, and
success on the shipped mnist/cnn-small."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alva.attacks import SparseRS
from alva.attacks.sparse_rs import changed_pixels, sparse_rs_alpha


def test_the_swap_schedule_halves_at_the_papers_steps():
    assert sparse_rs_alpha(0.3, 0, 10000) == 0.3
    assert sparse_rs_alpha(0.3, 1, 10000) == 0.15
    assert sparse_rs_alpha(0.3, 51, 10000) == 0.075
    assert sparse_rs_alpha(0.3, 8001, 10000) == 0.3 / 2**9
    assert sparse_rs_alpha(0.3, 20, 1000) == sparse_rs_alpha(0.3, 200, 10000)  # rescaled to the budget


@pytest.mark.parametrize("k", [5, 20])
def test_sparse_rs_changes_at_most_k_pixels_to_vertices_of_the_box(cnn_small, attack_batch, k):
    x, y = attack_batch[0][::4], attack_batch[1][::4]
    result = SparseRS(cnn_small, k=k, n_queries=300, seed=0)(x, y)
    changed = result.x_adv != x
    assert (changed_pixels(x, result.x_adv) <= k).all()
    assert torch.equal(result.extras["changed_pixels"], changed_pixels(x, result.x_adv))
    assert ((result.x_adv[changed] == 0) | (result.x_adv[changed] == 1)).all()
    with torch.no_grad():
        assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) != y)


def test_sparse_rs_spends_exactly_its_query_budget(cnn_small, attack_batch):
    x, y = attack_batch[0][::10], attack_batch[1][::10]
    full = SparseRS(cnn_small, k=3, n_queries=40, early_stop=False, seed=0)(x, y)
    assert (full.queries == 40).all() and (full.steps == 38).all()
    stopped = SparseRS(cnn_small, k=3, n_queries=40, seed=0)(x, y)
    assert (stopped.queries <= 40).all()
    assert (stopped.queries[~stopped.success] == 40).all()


def test_sparse_rs_breaks_most_images_with_20_pixels(cnn_small, attack_batch):
    """1000 queries: measured 0.95 success with 20 pixels on 200 images (0.66 with 10)."""
    x, y = attack_batch[0][::4], attack_batch[1][::4]
    result = SparseRS(cnn_small, k=20, n_queries=1000, seed=0)(x, y)
    assert result.success.double().mean() >= 0.85


def test_sparse_rs_counts_pixels_over_channels():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 5, (6,))
    result = SparseRS(model, k=4, n_queries=50, early_stop=False, seed=0)(x, y)
    assert (changed_pixels(x, result.x_adv) <= 4).all()
    assert ((result.x_adv != x).sum(dim=(1, 2, 3)) > 4).any()  # several channels of a pixel change


def test_sparse_rs_reaches_given_targets(cnn_small, attack_batch):
    x, y = attack_batch[0][::10], attack_batch[1][::10]
    target = (y + 1) % 10
    result = SparseRS(cnn_small, k=30, n_queries=1000, seed=0)(x, y, target)
    with torch.no_grad():
        assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) == target)
    assert result.success.double().mean() >= 0.5
