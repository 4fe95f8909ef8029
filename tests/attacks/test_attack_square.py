"""Square Attack: budgets and query counts checked by a model that counts its own queries per sample, the
threat model and bounds, effectiveness on the shipped models with small budgets, and the p schedule."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import accuracy, distance
from hypothesis import given, settings
from hypothesis import strategies as st
from score_helpers import Counting
from torch import nn

from alva.attacks import AttackInputError, Square
from alva.attacks.square import square_p


@pytest.mark.parametrize("eps, budget", [(0.3, 60), (0.05, 40)])
def test_queries_are_exact_never_over_budget_and_stop_at_success(cnn_small, attack_batch, eps, budget):
    x, y = attack_batch[0][:30], attack_batch[1][:30]
    counter = Counting(cnn_small, x, y, eps)
    res = Square(counter, eps=eps, n_queries=budget, seed=0)(x, y)
    assert torch.equal(res.queries, counter.counts)  # exact, per sample, the clean query included
    assert (res.queries <= budget).all()
    assert counter.grad_calls == 0
    assert (counter.after_success == 0).all()  # a sample is never queried again once it is broken
    assert torch.equal(res.success, counter.last_wrong)  # ... and its last query is the one that broke it
    standing = ~res.success
    assert (res.queries[standing] == budget).all()  # the others spend the whole budget
    assert (res.steps[standing] == budget - 2).all()
    if eps == 0.05:
        assert standing.sum() >= 20  # the budget-bound case is really exercised
    else:
        assert res.success.double().mean() >= 0.8


def test_without_early_stop_every_sample_spends_the_budget(softmax_model, attack_batch):
    x, y = attack_batch[0][:10], attack_batch[1][:10]
    res = Square(softmax_model, eps=0.3, n_queries=25, early_stop=False, seed=0)(x, y)
    assert (res.queries == 25).all()


@pytest.mark.parametrize("name, norm, eps, budget, n, max_acc", [
    ("softmax", "linf", 0.3, 100, 200, 0.05),
    ("cnn-small", "linf", 0.3, 300, 200, 0.05),
    ("cnn-small", "l2", 3.0, 400, 60, 0.25),
])
def test_square_lowers_accuracy_with_a_small_budget(cnn_small, softmax_model, attack_batch, name, norm, eps,
                                                    budget, n, max_acc):
    model = {"softmax": softmax_model, "cnn-small": cnn_small}[name]
    x, y = attack_batch[0][:n], attack_batch[1][:n]
    res = Square(model, eps=eps, n_queries=budget, norm=norm, seed=0)(x, y)
    assert (distance(norm, res.x_adv, x) <= eps + 1e-5).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert accuracy(model, res.x_adv, y) <= max_acc < accuracy(model, x, y) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(res.adv_logits, model(res.x_adv), rtol=1e-4, atol=1e-4)
    assert torch.equal(res.success, res.adv_logits.argmax(1) != y)


def test_targeted_square_reaches_targets(softmax_model, attack_batch):
    x, y = attack_batch[0][:50], attack_batch[1][:50]
    target = (y + 1) % 10
    res = Square(softmax_model, eps=0.3, n_queries=1000, seed=0)(x, y, target)
    with torch.no_grad():
        pred = softmax_model(res.x_adv).argmax(1)
    assert (pred == target).double().mean() >= 0.9
    assert torch.equal(res.success, res.adv_logits.argmax(1) == target)


def test_square_is_seeded_and_independent_of_the_batch(cnn_small, attack_batch):
    x, y = attack_batch[0][:30], attack_batch[1][:30]
    a = Square(cnn_small, eps=0.1, n_queries=40, seed=1)(x, y)
    b = Square(cnn_small, eps=0.1, n_queries=40, seed=1)(x, y)
    c = Square(cnn_small, eps=0.1, n_queries=40, seed=2)(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)
    rows = torch.arange(3, 30, 4)
    part = Square(cnn_small, eps=0.1, n_queries=40, seed=1)(x[rows], y[rows])
    assert torch.equal(part.queries, a.queries[rows])
    torch.testing.assert_close(part.x_adv, a.x_adv[rows], rtol=0, atol=1e-6)


def test_p_schedule_halves_at_the_papers_steps():
    assert square_p(0.8, 0, 10000) == 0.8
    assert square_p(0.8, 10, 10000) == 0.8
    assert square_p(0.8, 11, 10000) == 0.4
    assert square_p(0.8, 51, 10000) == 0.2
    assert square_p(0.8, 9999, 10000) == 0.8 / 2**9
    assert square_p(0.8, 2, 1000) == 0.4  # rescaled to the budget: step 2 of 1000 is step 20 of 10000
    # AutoAttack's setting: the steps as they are, whatever the budget
    assert square_p(0.8, 2, 1000, rescale=False) == 0.8
    assert square_p(0.8, 4001, 5002, rescale=False) == 0.8 / 2**7
    assert square_p(0.8, 4001, 5002) == 0.8 / 2**8  # step 7998 of 10000


def test_square_eps_zero_and_tiny_budget_change_nothing(cnn_small, attack_batch):
    x, y = attack_batch[0][:10], attack_batch[1][:10]
    for res in (Square(cnn_small, eps=0.0, seed=0)(x, y), Square(cnn_small, eps=0.3, n_queries=1, seed=0)(x, y)):
        assert torch.equal(res.x_adv, x) and (res.queries == 1).all()


@pytest.mark.parametrize("bad", [dict(eps=-0.1), dict(n_queries=0), dict(p_init=0), dict(p_init=1.5)])
def test_square_rejects_bad_settings(cnn_small, bad):
    with pytest.raises(AttackInputError):
        Square(cnn_small, **{"eps": 0.1, **bad})


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), shape=st.sampled_from([(1, 6, 6), (3, 5, 7), (2, 1, 4), (12,), (1, 2, 2)]),
       seed=st.integers(0, 10**6), norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.01, 3.0),
       budget=st.integers(1, 30), early_stop=st.booleans())
def test_square_properties(n, shape, seed, norm, eps, budget, early_stop):
    """Any image shape (and flat inputs): in the ball and the bounds, never over budget, logits the model's."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, *shape), generator=g)
    x = torch.where(torch.rand(x.shape, generator=g) < 0.3, x.round(), x)
    y = torch.randint(0, 10, (n,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    res = Square(model.eval(), eps=eps, n_queries=budget, norm=norm, early_stop=early_stop, seed=seed)(x, y)
    assert res.x_adv.shape == x.shape
    assert (distance(norm, res.x_adv, x) <= eps * (1 + 1e-5) + 1e-6).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert (res.queries <= budget).all() and (res.queries >= 1).all()
    if not early_stop:
        assert (res.queries == budget).all()
    with torch.no_grad():
        torch.testing.assert_close(res.adv_logits, model(res.x_adv), rtol=1e-4, atol=1e-5)
