"""NES: exact query counts within a hard budget, the eps ball and the bounds under L-inf and L2, effectiveness
on the shipped mnist/cnn-small, targets reached, seeds, batches, any input shape, and the estimate itself."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import accuracy, distance
from score_helpers import Counting, check_exact_counts, far_apart, flat_model, tiny_model

from alva.attacks import NES, Rows


@pytest.fixture(scope="module")
def small(attack_batch):
    x, y = attack_batch
    return x[3::7][:24], y[3::7][:24]


@pytest.mark.parametrize("budget, samples", [(150, 3), (30, 4)])
def test_queries_are_exact_and_never_over_budget(cnn_small, small, budget, samples):
    x, y = small
    assert far_apart(x, 0.32)
    counter = Counting(cnn_small, x, y, reach=0.32)  # the probes stay within 6 sigma of the iterate
    res = NES(counter, eps=0.3, n_queries=budget, samples=samples, alpha=0.05, sigma=0.001, seed=0)(x, y)
    check_exact_counts(res, counter, budget, probes=True)
    steps = (budget - 2) // (2 * samples + 1)
    assert (res.queries[~res.success] == 2 + steps * (2 * samples + 1)).all()


@pytest.mark.parametrize("norm, eps, alpha, max_acc", [("linf", 0.3, 0.05, 0.3), ("l2", 2.5, 0.5, 0.8)])
def test_lowers_accuracy_inside_the_ball_and_bounds(cnn_small, small, norm, eps, alpha, max_acc):
    x, y = small
    res = NES(cnn_small, eps=eps, n_queries=600, samples=4, alpha=alpha, sigma=0.01, norm=norm, seed=0)(x, y)
    assert accuracy(cnn_small, x, y) >= 0.9
    assert accuracy(cnn_small, res.x_adv, y) <= max_acc
    assert (distance(norm, res.x_adv, x) <= eps * (1 + 1e-5)).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1


def test_a_targeted_run_reaches_its_targets(cnn_small, small):
    x, y = small
    res = NES(cnn_small, eps=0.3, n_queries=1500, samples=4, alpha=0.05, sigma=0.01, target="random",
              seed=1)(x[:12], y[:12])
    assert res.success.double().mean() >= 0.5
    assert torch.equal(res.adv_pred[res.success], res.target[res.success])


def test_a_seed_repeats_and_a_sample_does_not_depend_on_its_batch(cnn_small, small):
    x, y = small
    settings = dict(eps=0.3, n_queries=100, samples=3, alpha=0.05, sigma=0.01)
    full, again = NES(cnn_small, **settings, seed=3)(x, y), NES(cnn_small, **settings, seed=3)(x, y)
    part = NES(cnn_small, **settings, seed=3)(x[[9, 4]], y[[9, 4]])
    assert torch.equal(full.x_adv, again.x_adv) and torch.equal(full.queries, again.queries)
    torch.testing.assert_close(part.x_adv, full.x_adv[[9, 4]], rtol=0, atol=1e-6)
    assert torch.equal(part.queries, full.queries[[9, 4]])


def test_the_estimate_points_along_the_gradient():
    """On a linear model the estimate with many samples is close in direction to the true gradient."""
    model = flat_model()
    x = torch.rand(4, 20, generator=torch.Generator().manual_seed(1))
    y = model(x).argmax(1)
    attack = NES(model, eps=0.1, n_queries=10, samples=400, sigma=1e-3, loss="ce", seed=0)
    x_req = x.clone().requires_grad_(True)
    true = torch.autograd.grad(attack.loss(model(x_req), y, None).sum(), x_req)[0]
    rows = Rows(None, len(x), x=x, y=y, loss_target=None, stream=(0, 0))
    with torch.no_grad():
        estimate = attack.estimate(rows, 0, None)
    cosine = torch.nn.functional.cosine_similarity(estimate, true, dim=1)
    assert (cosine > 0.8).all()


@pytest.mark.parametrize("make_model, shape", [(tiny_model, (3, 8, 8)), (flat_model, (20,))])
def test_any_input_shape(make_model, shape):
    model = make_model()
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    res = NES(model, eps=1.0, n_queries=100, samples=2, alpha=0.2, sigma=0.01, norm="l2", seed=0)(x, y)
    assert res.x_adv.shape == x.shape
    assert (distance("l2", res.x_adv, x) <= 1.0 + 1e-5).all()
    assert (res.queries <= 100).all() and res.success.any()
