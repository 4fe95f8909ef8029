"""SPSA: exact query counts within a hard budget (a model that counts its own queries), the eps ball and the
bounds, effectiveness on the shipped mnist/cnn-small, targets reached, seeds, batches and any image shape."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import accuracy, distance
from score_helpers import Counting, check_exact_counts, far_apart, flat_model, tiny_model

from alva.attacks import SPSA, AttackInputError


@pytest.fixture(scope="module")
def small(attack_batch):
    x, y = attack_batch
    return x[::7][:24], y[::7][:24]


@pytest.mark.parametrize("budget, samples", [(200, 4), (57, 2), (7, 2)])
def test_queries_are_exact_and_never_over_budget(cnn_small, small, budget, samples):
    x, y = small
    assert far_apart(x, 0.31)
    counter = Counting(cnn_small, x, y, reach=0.3 + 0.01)
    res = SPSA(counter, eps=0.3, n_queries=budget, samples=samples, lr=0.05, seed=0)(x, y)
    check_exact_counts(res, counter, budget, probes=True)
    steps = (budget - 2) // (2 * samples + 1)
    standing = ~res.success
    assert (res.queries[standing] == 2 + steps * (2 * samples + 1)).all()  # the whole budget a step can use
    assert (res.steps <= steps).all()


def test_without_early_stop_every_sample_spends_the_same_budget(cnn_small, small):
    x, y = small
    res = SPSA(cnn_small, eps=0.3, n_queries=40, samples=3, early_stop=False, seed=0)(x[:6], y[:6])
    assert (res.queries == 2 + 5 * 7).all()


@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.5)])
def test_lowers_accuracy_inside_the_ball_and_bounds(cnn_small, small, norm, eps):
    x, y = small
    lr = 0.05 if norm == "linf" else 0.02
    res = SPSA(cnn_small, eps=eps, n_queries=600, samples=4, lr=lr, norm=norm, seed=0)(x, y)
    assert accuracy(cnn_small, x, y) >= 0.9
    assert accuracy(cnn_small, res.x_adv, y) <= (0.2 if norm == "linf" else 0.65)
    assert (distance(norm, res.x_adv, x) <= eps * (1 + 1e-5)).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_a_targeted_run_reaches_its_targets(cnn_small, small):
    x, y = small
    res = SPSA(cnn_small, eps=0.3, n_queries=1500, samples=4, lr=0.05, target="random", seed=1)(x[:12], y[:12])
    assert (res.target != y[:12]).all()
    assert res.success.double().mean() >= 0.6
    assert torch.equal(res.adv_pred[res.success], res.target[res.success])


def test_a_seed_repeats_and_a_sample_does_not_depend_on_its_batch(cnn_small, small):
    x, y = small
    full = SPSA(cnn_small, eps=0.3, n_queries=120, samples=4, lr=0.05, seed=3)(x, y)
    again = SPSA(cnn_small, eps=0.3, n_queries=120, samples=4, lr=0.05, seed=3)(x, y)
    other = SPSA(cnn_small, eps=0.3, n_queries=120, samples=4, lr=0.05, seed=4)(x, y)
    part = SPSA(cnn_small, eps=0.3, n_queries=120, samples=4, lr=0.05, seed=3)(x[[7, 2]], y[[7, 2]])
    assert torch.equal(full.x_adv, again.x_adv) and torch.equal(full.queries, again.queries)
    assert not torch.equal(full.x_adv, other.x_adv)
    torch.testing.assert_close(part.x_adv, full.x_adv[[7, 2]], rtol=0, atol=1e-6)
    assert torch.equal(part.queries, full.queries[[7, 2]])


@pytest.mark.parametrize("make_model, shape", [(tiny_model, (3, 8, 8)), (flat_model, (20,))])
def test_any_input_shape(make_model, shape):
    model = make_model()
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    res = SPSA(model, eps=0.2, n_queries=100, samples=2, lr=0.05, bounds=(0.0, 1.0), seed=0)(x, y)
    assert res.x_adv.shape == x.shape
    assert (distance("linf", res.x_adv, x) <= 0.2 + 1e-6).all()
    assert (res.queries <= 100).all() and res.success.any()


def test_rejects_bad_settings(cnn_small):
    with pytest.raises(AttackInputError):
        SPSA(cnn_small, samples=0)
    with pytest.raises(AttackInputError):
        SPSA(cnn_small, delta=0.0)


def test_a_larger_budget_tells_the_success_under_a_smaller_one(cnn_small, small):
    """The search does not depend on the budget: the images a budget of 100 breaks are those that a budget of
    400 had broken within 100 queries (what benchmarks/query_efficiency.py relies on)."""
    x, y = small
    large = SPSA(cnn_small, eps=0.3, n_queries=400, samples=4, lr=0.05, seed=0)(x, y)
    small_budget = SPSA(cnn_small, eps=0.3, n_queries=100, samples=4, lr=0.05, seed=0)(x, y)
    assert torch.equal(small_budget.success, large.success & (large.queries <= 100))
    assert 0 < small_budget.success.sum() < large.success.sum()


def test_the_size_of_the_forward_passes_changes_no_result(cnn_small, small):
    x, y = small
    whole = SPSA(cnn_small, eps=0.3, n_queries=80, samples=4, seed=0)(x[:6], y[:6])
    pieces = SPSA(cnn_small, eps=0.3, n_queries=80, samples=4, max_rows=7, seed=0)(x[:6], y[:6])
    torch.testing.assert_close(pieces.x_adv, whole.x_adv, rtol=0, atol=1e-6)
    assert torch.equal(pieces.queries, whole.queries)
