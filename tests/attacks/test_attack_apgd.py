"""APGD, APGD-T and the DLR loss: against the shipped MNIST classifiers on the fixed 200-image batch, and
properties on tiny random models. Accuracies are recomputed here with the model on the returned x_adv."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import accuracy, distance, predict
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from alva.attacks import APGD, PGD, APGDTargeted, AttackInputError, DLRLoss, dlr, dlr_targeted
from alva.attacks.apgd import apgd_checkpoints
from alva.attacks.engine import Rows
from alva.attacks.keyed import KeyedRandom

# --- the step-size schedule and the loss -------------------------------------------------------------------

def test_checkpoints_follow_the_paper():
    """p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce and Hein 2020, Section 3.2)."""
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10) == [3, 5, 6, 7, 8, 9]
    assert apgd_checkpoints(1) == []


def test_a_checkpoint_halves_the_step_on_either_condition_and_restarts_from_the_best_point():
    """Rows: 0 rose in too few steps (condition 1); 1 rose often enough but its best loss did not grow and it was
    not halved last time (condition 2); 2 rose often and improved; 3 is like 1 but was halved last time."""
    attack = APGD(nn.Linear(2, 3), eps=1.0, steps=10)
    n_up = torch.tensor([2, 8, 8, 8])
    s = Rows(None, 4, **{"n_up": n_up, "halved": torch.tensor([False, False, False, True]),
         "f_max": torch.tensor([1.0, 1.0, 2.0, 1.0]), "f_check": torch.tensor([0.5, 1.0, 1.0, 1.0]),
         "eta": torch.full((4,), 2.0), "x": torch.zeros(4, 2), "x_max": torch.ones(4, 2), "g": torch.zeros(4, 2),
         "g_max": torch.full((4, 2), 3.0), "x_prev": torch.full((4, 2), -1.0), "f_prev": torch.zeros(4)})
    attack._check(s, 10)  # rho * 10 = 7.5 rises needed
    halved = torch.tensor([True, True, False, False])
    assert torch.equal(s.halved, halved)
    assert torch.equal(s.eta, torch.where(halved, 1.0, 2.0))
    assert torch.equal(s.x[:, 0], halved.float()) and torch.equal(s.x_prev[:, 0], torch.where(halved, 1.0, -1.0))
    assert torch.equal(s.g[:, 0], torch.where(halved, 3.0, 0.0))
    assert torch.equal(s.f_prev, torch.where(halved, s.f_max, 0.0))
    assert torch.equal(s.f_check, s.f_max) and (s.n_up == 0).all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), scale=st.floats(0.01, 1000), shift=st.floats(-100, 100))
def test_dlr_ignores_scale_and_shift_and_is_positive_exactly_when_misclassified(seed, scale, shift):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(16, 10, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 10, (16,), generator=g)
    t = (y + torch.randint(1, 10, (16,), generator=g)) % 10
    torch.testing.assert_close(dlr(scale * z + shift, y), dlr(z, y))
    torch.testing.assert_close(dlr_targeted(scale * z + shift, y, t), dlr_targeted(z, y, t))
    assert torch.equal(dlr(z, y) > 0, z.argmax(1) != y)


def test_dlr_values_on_a_hand_made_example():
    z = torch.tensor([[5.0, 3.0, 1.0, 0.0, -1.0]])
    y, t = torch.tensor([0]), torch.tensor([3])
    # untargeted: -(z_y - max other) / (z_pi1 - z_pi3) = -(5 - 3) / (5 - 1)
    assert dlr(z, y).item() == pytest.approx(-0.5)
    # targeted: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(5 - 0) / (5 - 0.5)
    assert dlr_targeted(z, y, t).item() == pytest.approx(-5 / 4.5)


def test_dlr_needs_enough_classes():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x, y = torch.rand(3, 4), torch.tensor([0, 1, 0])
    with pytest.raises(AttackInputError, match="at least 3 classes"):
        APGD(model, eps=0.1, steps=2, loss="dlr")(x, y)
    with pytest.raises(AttackInputError, match="at least 4 classes"):
        APGDTargeted(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), eps=0.1, steps=2)(x, y)
    assert repr(DLRLoss()) == "dlr"


# --- against the shipped models ----------------------------------------------------------------------------

@pytest.mark.parametrize("norm, eps, loss", [("linf", 0.3, "ce"), ("linf", 0.3, "dlr"), ("l2", 2.0, "ce")])
def test_apgd_stays_in_the_ball_and_the_pixel_range(cnn_small, attack_batch, norm, eps, loss):
    x, y = attack_batch[0][:60], attack_batch[1][:60]
    res = APGD(cnn_small, eps=eps, steps=10, norm=norm, loss=loss, seed=0)(x, y)
    assert (distance(norm, res.x_adv, x) <= eps + 1e-5).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(res.adv_logits, cnn_small(res.x_adv), rtol=1e-4, atol=1e-4)
    assert torch.equal(res.success, res.adv_logits.argmax(1) != y)
    if norm == "l2":  # L2 steps move single pixels further than an L-inf ball of the same budget would
        assert distance("linf", res.x_adv, x).max() > 0.3


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_breaks_cnn_small_at_eps_0_3(cnn_small, attack_batch, loss):
    x, y = attack_batch
    res = APGD(cnn_small, eps=0.3, steps=20, loss=loss, early_stop=True, seed=0)(x, y)
    assert accuracy(cnn_small, res.x_adv, y) <= 0.01
    assert (distance("linf", res.x_adv, x) <= 0.3 + 1e-5).all()


@pytest.mark.parametrize("eps, steps", [(0.08, 50), (0.12, 20)])
def test_apgd_is_at_least_as_strong_as_pgd_with_the_same_steps(cnn_small, attack_batch, eps, steps):
    x, y = attack_batch
    apgd = accuracy(cnn_small, APGD(cnn_small, eps=eps, steps=steps, seed=0)(x, y).x_adv, y)
    pgd = accuracy(cnn_small, PGD(cnn_small, eps=eps, steps=steps, seed=0)(x, y).x_adv, y)
    assert apgd <= pgd
    assert apgd < accuracy(cnn_small, x, y) - 0.3  # and the eps is one where attacks matter


@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_targeted_apgd_reaches_its_targets(cnn_small, attack_batch, loss):
    x, y = attack_batch[0][:100], attack_batch[1][:100]
    target = (y + 3) % 10
    res = APGD(cnn_small, eps=0.3, steps=30, loss=loss, seed=0)(x, y, target)
    assert torch.equal(res.target, target)
    reached = predict(cnn_small, res.x_adv) == target
    assert reached.double().mean() >= 0.9
    assert torch.equal(res.success, res.adv_logits.argmax(1) == target)
    # a target rule works too
    res = APGD(cnn_small, eps=0.3, steps=30, loss=loss, target="random", seed=1)(x, y)
    assert (predict(cnn_small, res.x_adv) == res.target).double().mean() >= 0.9


def test_apgd_t_goes_through_the_most_likely_classes_and_counts_queries_exactly(cnn_small, attack_batch):
    x, y = attack_batch
    steps, k = 10, 3
    res = APGDTargeted(cnn_small, eps=0.08, steps=steps, n_target_classes=k, early_stop=True, seed=0)(x, y)
    with torch.no_grad():
        clean = cnn_small(x)
    clean_ok = clean.argmax(1) == y
    assert torch.equal(res.success, res.adv_logits.argmax(1) != y)
    assert res.success[clean_ok].double().mean() > 0.3  # it does break points at this eps ...
    assert (~res.success[clean_ok]).sum() > 20  # ... and leaves some standing, so every pass runs
    ranked = clean.scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)[:, :k]
    tc = res.extras["target_class"]
    broken = res.success & clean_ok
    assert (tc[~broken] == -1).all()
    for i in broken.nonzero().squeeze(1).tolist():
        rank = (ranked[i] == tc[i]).nonzero().squeeze(1)
        assert len(rank) == 1  # the target is one of the k most likely other classes
        # passes before its own ran to the end; its own stopped at the success
        assert res.queries[i] <= 1 + (rank.item() + 1) * (steps + 1)
        assert res.queries[i] > 1 + rank.item() * (steps + 1)
    standing = clean_ok & ~res.success
    assert (res.queries[standing] == 1 + k * (steps + 1)).all()
    assert (res.steps[standing] == k * steps).all()
    assert (res.queries[~clean_ok] == 1).all()  # misclassified to begin with: never attacked


def test_apgd_t_refuses_given_targets(cnn_small, attack_batch):
    x, y = attack_batch[0][:4], attack_batch[1][:4]
    with pytest.raises(AttackInputError, match="picks its own targets"):
        APGDTargeted(cnn_small, eps=0.1, steps=2)(x, y, (y + 1) % 10)
    with pytest.raises(AttackInputError, match="picks its own targets"):
        APGDTargeted(cnn_small, eps=0.1, steps=2, target="random")


def test_apgd_beats_a_saturated_softmax_with_dlr(load_zoo, attack_batch):
    """Logits times 1000: the cross-entropy gradient is exactly zero on confident points; DLR does not care."""
    model = nn.Sequential(load_zoo("mnist/cnn-small"), Scale(1000.0)).eval()
    x, y = attack_batch[0][:100], attack_batch[1][:100]
    ce = accuracy(model, APGD(model, eps=0.3, steps=20, loss="ce", random_start=False, seed=0)(x, y).x_adv, y)
    dlr_acc = accuracy(model, APGD(model, eps=0.3, steps=20, loss="dlr", random_start=False, seed=0)(x, y).x_adv, y)
    assert dlr_acc <= 0.02 < 0.5 < ce


class Scale(nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.factor


def test_apgd_is_seeded_and_draws_its_start_per_sample(cnn_small, attack_batch):
    x, y = attack_batch[0][:40], attack_batch[1][:40]
    a = APGD(cnn_small, eps=0.1, steps=5, seed=3)(x, y)
    b = APGD(cnn_small, eps=0.1, steps=5, seed=3)(x, y)
    c = APGD(cnn_small, eps=0.1, steps=5, seed=4)(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert not torch.equal(a.x_adv, c.x_adv)
    # The random numbers of a sample do not depend on its batch: same rows, same numbers.
    gen = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    full = KeyedRandom(x, gen()).uniform(torch.arange(40), (0, 1), 50)
    rows = torch.tensor([5, 17, 30])
    part = KeyedRandom(x[rows], gen()).uniform(torch.arange(3), (0, 1), 50)
    assert torch.equal(full[rows], part)
    assert 0 <= full.min() and full.max() < 1 and abs(full.mean().item() - 0.5) < 0.02
    other_stream = KeyedRandom(x, gen()).uniform(torch.arange(40), (0, 2), 50)
    assert not torch.equal(full, other_stream)


def test_apgd_eps_zero_changes_nothing(cnn_small, attack_batch):
    x, y = attack_batch[0][:20], attack_batch[1][:20]
    res = APGD(cnn_small, eps=0.0, steps=3, seed=0)(x, y)
    assert torch.equal(res.x_adv, x)


@pytest.mark.parametrize("bad", [dict(eps=-1), dict(steps=0), dict(restarts=0), dict(rho=0), dict(momentum=2)])
def test_apgd_rejects_bad_settings(cnn_small, bad):
    with pytest.raises(AttackInputError):
        APGD(cnn_small, **{"eps": 0.1, **bad})


# --- properties on tiny random models ----------------------------------------------------------------------

def tiny_model(shape: tuple[int, ...], seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape[1:]), 16), nn.Tanh(), nn.Linear(16, 10))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return model.eval()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), dims=st.lists(st.integers(1, 6), min_size=1, max_size=3), seed=st.integers(0, 10**6),
       norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.01, 2.0), steps=st.integers(1, 12),
       restarts=st.integers(1, 2), early_stop=st.booleans(), loss=st.sampled_from(["ce", "dlr", "margin"]))
def test_apgd_properties(n, dims, seed, norm, eps, steps, restarts, early_stop, loss):
    """In the ball and the bounds, logits are the model's, and the queries are exact: without early stop
    every sample gets the clean pass and steps + 1 passes per restart."""
    shape = (n, *dims)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    x = torch.where(torch.rand(shape, generator=g) < 0.3, x.round(), x)  # pixels on the bounds too
    y = torch.randint(0, 10, (n,), generator=g)
    model = tiny_model(shape, seed)
    res = APGD(model, eps=eps, steps=steps, norm=norm, loss=loss, restarts=restarts, early_stop=early_stop,
               seed=seed)(x, y)
    assert res.x_adv.shape == x.shape
    assert (distance(norm, res.x_adv, x) <= eps * (1 + 1e-5) + 1e-6).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(res.adv_logits, model(res.x_adv), rtol=1e-4, atol=1e-5)
    if not early_stop:
        assert (res.queries == 1 + restarts * (steps + 1)).all()
        assert (res.steps == restarts * steps).all()
    else:
        assert (res.queries <= 1 + restarts * (steps + 1)).all()
        assert (res.queries[~res.success] == 1 + restarts * (steps + 1)).all()
