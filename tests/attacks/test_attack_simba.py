"""SimBA: exact query counts within a hard budget, no query after a success, the ball and the bounds,
effectiveness on the shipped mnist/cnn-small with both bases, the DCT basis, directions without replacement,
targets reached, seeds, batches and any input shape."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import accuracy, distance
from score_helpers import Counting, check_exact_counts, far_apart, flat_model, tiny_model

from alva.attacks import AttackInputError, SimBA
from alva.attacks.engine import Run
from alva.attacks.simba import dct_matrix


@pytest.fixture(scope="module")
def small(attack_batch):
    x, y = attack_batch
    return x[5::7][:24], y[5::7][:24]


@pytest.mark.parametrize("basis, budget", [("dct", 120), ("pixel", 60), ("dct", 2)])
def test_queries_are_exact_never_over_budget_and_stop_at_success(cnn_small, small, basis, budget):
    x, y = small
    assert far_apart(x, 0.45)
    counter = Counting(cnn_small, x, y, reach=0.45)  # in an L2 ball of 0.45, no pixel moves further
    res = SimBA(counter, eps=0.45, n_queries=budget, step=0.3, basis=basis, seed=0)(x, y)
    check_exact_counts(res, counter, budget)
    assert (res.queries[~res.success] == budget).all()


@pytest.mark.parametrize("basis, max_acc", [("dct", 0.4), ("pixel", 0.6)])
def test_lowers_accuracy_inside_the_ball_and_bounds(cnn_small, small, basis, max_acc):
    x, y = small
    res = SimBA(cnn_small, eps=3.0, n_queries=500, step=0.5, basis=basis, seed=0)(x, y)
    assert accuracy(cnn_small, x, y) >= 0.9
    assert accuracy(cnn_small, res.x_adv, y) <= max_acc
    assert (distance("l2", res.x_adv, x) <= 3.0 * (1 + 1e-5)).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_linf_ball(cnn_small, small):
    x, y = small
    res = SimBA(cnn_small, eps=0.3, norm="linf", n_queries=300, step=0.3, basis="pixel", seed=0)(x, y)
    assert (distance("linf", res.x_adv, x) <= 0.3 + 1e-6).all()
    assert accuracy(cnn_small, res.x_adv, y) < accuracy(cnn_small, x, y) - 0.3


def test_each_kept_step_is_one_direction_of_the_basis(cnn_small, small):
    """Without a ball, the perturbation is a sum of distinct orthonormal directions of length ``step``: its
    squared norm is ``step ** 2`` times the steps kept (the pixel basis, where the bounds do not cut)."""
    x, y = small
    x = x.clamp(0.3, 0.7)  # away from the bounds: no step is cut
    res = SimBA(cnn_small, n_queries=200, step=0.1, basis="pixel", early_stop=False, seed=0)(x, y)
    delta = (res.x_adv - x).reshape(len(x), -1)
    moved = (delta.abs() > 1e-6).sum(dim=1)
    assert moved.min() > 0
    torch.testing.assert_close(delta.pow(2).sum(dim=1), 0.01 * moved.double().float(), rtol=1e-3, atol=1e-4)
    assert ((delta.abs() - 0.1).abs()[delta.abs() > 1e-6] < 1e-5).all()  # every pixel moved once, by the step


def test_the_dct_basis_is_orthonormal_and_low_frequencies_come_first(cnn_small, small):
    m = dct_matrix(7, dtype=torch.float64)
    torch.testing.assert_close(m @ m.T, torch.eye(7, dtype=torch.float64))
    x, y = small
    attack = SimBA(cnn_small, n_queries=10, basis="dct", freq_dims=7, seed=0)
    run = Run(attack, x, y, None, cnn_small(x).detach(), torch.Generator().manual_seed(0))
    rows = run.rows(None, rows_type=attack.rows_type)
    attack.start(run, rows)
    first = rows.order[:, :49] % 784
    assert ((first // 28 < 7) & (first % 28 < 7)).all()  # the 7 x 7 lowest frequencies first
    assert len({tuple(o.tolist()) for o in rows.order[:, :49]}) == len(x)  # in an order of each sample's own
    assert all(len(set(o.tolist())) == 784 for o in rows.order)  # every direction once


def test_a_targeted_run_reaches_its_targets(cnn_small, small):
    x, y = small
    res = SimBA(cnn_small, n_queries=1500, step=0.5, target="random", seed=1)(x[:12], y[:12])
    assert res.success.double().mean() >= 0.6
    assert torch.equal(res.adv_pred[res.success], res.target[res.success])


def test_a_seed_repeats_and_a_sample_does_not_depend_on_its_batch(cnn_small, small):
    x, y = small
    full, again = (SimBA(cnn_small, eps=2.0, n_queries=150, seed=3)(x, y) for _ in range(2))
    part = SimBA(cnn_small, eps=2.0, n_queries=150, seed=3)(x[[8, 3]], y[[8, 3]])
    assert torch.equal(full.x_adv, again.x_adv) and torch.equal(full.queries, again.queries)
    torch.testing.assert_close(part.x_adv, full.x_adv[[8, 3]], rtol=0, atol=1e-6)
    assert torch.equal(part.queries, full.queries[[8, 3]])


@pytest.mark.parametrize("basis", ["pixel", "dct"])
@pytest.mark.parametrize("make_model, shape", [(tiny_model, (3, 8, 8)), (flat_model, (20,))])
def test_any_input_shape(make_model, shape, basis):
    model = make_model()
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    res = SimBA(model, eps=1.0, n_queries=100, step=0.3, basis=basis, seed=0)(x, y)
    assert res.x_adv.shape == x.shape
    assert (distance("l2", res.x_adv, x) <= 1.0 + 1e-5).all()
    assert (res.queries <= 100).all() and res.success.any()


def test_rejects_an_unknown_basis(cnn_small):
    with pytest.raises(AttackInputError):
        SimBA(cnn_small, basis="wavelet")


def test_a_larger_budget_tells_the_success_under_a_smaller_one(cnn_small, small):
    """The images a budget of 100 breaks are those that a budget of 400 had broken within 100 queries."""
    x, y = small
    large = SimBA(cnn_small, eps=2.0, n_queries=400, step=0.5, seed=0)(x, y)
    small_budget = SimBA(cnn_small, eps=2.0, n_queries=100, step=0.5, seed=0)(x, y)
    assert torch.equal(small_budget.success, large.success & (large.queries <= 100))
    assert 0 < small_budget.success.sum() < large.success.sum()
