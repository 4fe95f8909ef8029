"""PGD and FGSM against the shipped MNIST classifiers on a fixed real test batch (200 images).

Accuracies are measured here with the model itself on the returned x_adv, not read from the result.
"""

from __future__ import annotations

import pytest
import torch
from attack_helpers import accuracy, distance, predict
from torch import nn

from alva.attacks import FGSM, PGD, AttackResult, margin
from alva.attacks.engine import Repeated


def assert_success_is_misclassification(model: nn.Module, res: AttackResult, y: torch.Tensor) -> None:
    """The reported success is the model's misclassification of x_adv (recomputed here), except where x_adv
    lies within float rounding of the decision boundary (the attack may have run on a smaller batch)."""
    with torch.no_grad():
        logits = model(res.x_adv)
    clear = margin(logits, y, targeted=False).abs() > 1e-4
    assert clear.double().mean() > 0.97
    assert torch.equal(res.success[clear], (logits.argmax(1) != y)[clear])


def check_valid(model, x, res: AttackResult, *, eps: float, norm: str) -> None:
    """x_adv is in the ball and the bounds, and the reported logits are the model's."""
    assert (distance(norm, res.x_adv, x) <= eps + 1e-5).all()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    with torch.no_grad():
        torch.testing.assert_close(res.adv_logits, model(res.x_adv), rtol=1e-4, atol=1e-4)


# --- effectiveness -----------------------------------------------------------------------------------------

def test_clean_accuracy_of_the_shipped_model_is_high(cnn_small, attack_batch):
    """The premise of the attack tests: the model is accurate on the clean batch."""
    assert accuracy(cnn_small, *attack_batch) >= 0.95


def test_linf_pgd_breaks_cnn_small(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=0.3, steps=40, seed=0)(x, y)
    check_valid(cnn_small, x, res, eps=0.3, norm="linf")
    assert accuracy(cnn_small, res.x_adv, y) < 0.05
    assert_success_is_misclassification(cnn_small, res, y)


def test_fgsm_lowers_accuracy_substantially_and_pgd_does_at_least_as_well(cnn_small, attack_batch):
    x, y = attack_batch
    clean = accuracy(cnn_small, x, y)
    fgsm = FGSM(cnn_small, eps=0.3)(x, y)
    check_valid(cnn_small, x, fgsm, eps=0.3, norm="linf")
    fgsm_acc = accuracy(cnn_small, fgsm.x_adv, y)
    assert fgsm_acc < 0.5 * clean
    # FGSM is x + eps * sign(gradient of the loss), clipped to the pixel bounds, wherever that succeeded.
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(nn.functional.cross_entropy(cnn_small(xg), y, reduction="sum"), xg)
    expected = (x + 0.3 * grad.sign()).clamp(0, 1)
    fooled = fgsm.success & (predict(cnn_small, x) == y)
    assert fooled.sum() > 100
    same = (fgsm.x_adv[fooled] - expected[fooled]).abs() <= 1e-6
    assert same.double().mean() > 0.999
    pgd = PGD(cnn_small, eps=0.3, steps=10, seed=0)(x, y)
    assert accuracy(cnn_small, pgd.x_adv, y) <= fgsm_acc


def test_fgsm_at_small_eps_is_weaker_than_at_large_eps(cnn_small, attack_batch):
    x, y = attack_batch
    small = accuracy(cnn_small, FGSM(cnn_small, eps=0.05)(x, y).x_adv, y)
    large = accuracy(cnn_small, FGSM(cnn_small, eps=0.2)(x, y).x_adv, y)
    assert large < small < accuracy(cnn_small, x, y)


def test_fgsm_breaks_the_softmax_model(softmax_model, attack_batch):
    """Goodfellow et al. (2015): eps = 0.25 FGSM fools shallow softmax regression on MNIST almost always."""
    x, y = attack_batch
    assert accuracy(softmax_model, x, y) > 0.85
    res = FGSM(softmax_model, eps=0.25)(x, y)
    check_valid(softmax_model, x, res, eps=0.25, norm="linf")
    assert accuracy(softmax_model, res.x_adv, y) < 0.1


def test_l2_pgd_breaks_cnn_small(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=2.5, steps=30, norm="l2", seed=0)(x, y)
    check_valid(cnn_small, x, res, eps=2.5, norm="l2")
    assert accuracy(cnn_small, res.x_adv, y) < 0.15
    # L2 steps concentrate on the pixels that matter: some move further than an L-inf attack at 0.3 allows.
    assert distance("linf", res.x_adv, x).max() > 0.3


def test_margin_loss_breaks_cnn_small(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=0.3, steps=40, loss="cw", seed=0)(x, y)
    check_valid(cnn_small, x, res, eps=0.3, norm="linf")
    assert accuracy(cnn_small, res.x_adv, y) < 0.05
    # Success is exactly a positive margin at x_adv.
    assert torch.equal(res.success, margin(res.adv_logits, y, targeted=False) > 0)


@pytest.mark.parametrize("make", [lambda m: PGD(m, eps=0.0, steps=3, seed=0), lambda m: FGSM(m, eps=0.0),
                                  lambda m: PGD(m, eps=0.0, steps=3, random_start=False)])
def test_eps_zero_changes_nothing_and_costs_only_the_clean_pass(cnn_small, attack_batch, make):
    x, y = attack_batch
    res = make(cnn_small)(x, y)
    assert torch.equal(res.x_adv, x)
    assert torch.equal(res.success, predict(cnn_small, x) != y)
    assert (res.steps == 0).all() and (res.queries == 1).all()
    torch.testing.assert_close(res.adv_logits, cnn_small(x), rtol=1e-5, atol=1e-5)


def test_eps_zero_targeted_succeeds_only_where_the_clean_prediction_is_the_target(cnn_small, attack_batch):
    x, y = attack_batch
    target = (y + 1) % 10
    res = PGD(cnn_small, eps=0.0, steps=3)(x, y, target=target)
    assert torch.equal(res.success, predict(cnn_small, x) == target) and torch.equal(res.target, target)


# --- targeted ----------------------------------------------------------------------------------------------

def check_targeted(model, x, y, res, target):
    assert res.target is not None and torch.equal(res.target, target)
    check_valid(model, x, res, eps=0.3, norm="linf")
    pred = predict(model, res.x_adv)
    assert torch.equal(res.success, res.adv_logits.argmax(1) == target)
    assert (pred == target).double().mean() >= 0.9


def test_targeted_with_an_explicit_target_tensor(cnn_small, attack_batch):
    x, y = attack_batch
    g = torch.Generator().manual_seed(5)
    target = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
    res = PGD(cnn_small, eps=0.3, steps=40, seed=0)(x, y, target)
    check_targeted(cnn_small, x, y, res, target)


def test_target_tensor_overrides_the_rule(cnn_small, attack_batch):
    x, y = attack_batch
    x, y = x[:50], y[:50]
    target = (y + 3) % 10
    res = PGD(cnn_small, eps=0.3, steps=40, target="least-likely", seed=0)(x, y, target)
    check_targeted(cnn_small, x, y, res, target)


def test_targeted_random_rule(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=0.3, steps=40, target="random", seed=0)(x, y)
    assert res.target.shape == y.shape and res.target.dtype == torch.long
    assert (res.target != y).all()
    assert ((res.target >= 0) & (res.target < 10)).all()
    # The targets are spread over the other classes, not one fixed offset.
    assert len(torch.unique((res.target - y) % 10)) >= 5
    check_targeted(cnn_small, x, y, res, res.target)


def test_targeted_least_likely_rule(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=0.3, steps=40, target="least-likely", seed=0)(x, y)
    with torch.no_grad():
        logits = cnn_small(x)
    # The least likely class other than the true one, by the clean logits.
    expected = torch.tensor([min((c for c in range(10) if c != int(label)), key=lambda c: float(row[c]))
                             for row, label in zip(logits, y, strict=True)])
    assert (res.target != y).all()
    assert torch.equal(res.target, expected)
    check_targeted(cnn_small, x, y, res, expected)


def test_targeted_margin_loss(cnn_small, attack_batch):
    x, y = attack_batch
    res = PGD(cnn_small, eps=0.3, steps=40, target="random", loss="margin", seed=1)(x, y)
    check_targeted(cnn_small, x, y, res, res.target)
    assert torch.equal(res.success, margin(res.adv_logits, res.target, targeted=True) > 0)


def test_targeted_fgsm_moves_towards_the_target(cnn_small, attack_batch):
    x, y = attack_batch
    target = (y + 1) % 10
    res = FGSM(cnn_small, eps=0.1)(x, y, target)
    with torch.no_grad():
        before = torch.log_softmax(cnn_small(x), 1).gather(1, target[:, None])
        after = torch.log_softmax(cnn_small(res.x_adv), 1).gather(1, target[:, None])
    assert (after > before).double().mean() > 0.95


# --- restarts, early stop, seeds --------------------------------------------------------------------------

WEAK = dict(eps=0.08, steps=5)  # partial success (~35%), so that differences between settings can show


@pytest.mark.parametrize("early_stop", [False, True])
def test_restarts_never_do_worse_than_one_run(cnn_small, attack_batch, early_stop):
    x, y = attack_batch
    one = PGD(cnn_small, **WEAK, restarts=1, early_stop=early_stop, seed=7)(x, y)
    three = PGD(cnn_small, **WEAK, restarts=3, early_stop=early_stop, seed=7)(x, y)
    assert 0.05 < one.success_rate < 0.95  # a setting where restarts can matter
    assert not (one.success & ~three.success).any()
    assert three.success_rate >= one.success_rate
    assert_success_is_misclassification(cnn_small, three, y)
    check_valid(cnn_small, x, three, eps=WEAK["eps"], norm="linf")
    # Samples that never succeed spent every step of every restart.
    assert (three.steps[~three.success] == 3 * WEAK["steps"]).all()


def test_a_success_is_never_replaced_by_a_later_failure(cnn_small, attack_batch):
    """The best iterate is a success if there was one, even when later iterates reach a higher loss.

    The loss here rewards the labelled class (an "anti-attack"), so every step raises it while moving
    away from success; samples labelled wrongly are successes from the start and must stay so.
    """
    x, y = attack_batch
    y_mixed = torch.where(torch.arange(len(y)) % 4 == 0, (y + 1) % 10, y)
    wrong = predict(cnn_small, x) != y_mixed

    def anti(logits, labels, targeted):
        return -nn.functional.cross_entropy(logits, labels, reduction="none")

    res = PGD(cnn_small, eps=0.3, steps=5, loss=anti, restarts=2, seed=0)(x, y_mixed)
    after = predict(cnn_small, res.x_adv)
    assert res.success[wrong].all()
    assert (after[wrong] != y_mixed[wrong]).all()
    # The anti-attack did move the others: x_adv is where the loss is highest, mostly away from x.
    assert (res.x_adv[~wrong] != x[~wrong]).flatten(1).any(1).double().mean() > 0.5


def test_early_stop_finds_the_same_successes_with_fewer_steps(cnn_small, attack_batch):
    x, y = attack_batch
    # Without a random start both runs follow the same path for each sample until it succeeds.
    full = PGD(cnn_small, **WEAK, random_start=False)(x, y)
    early = PGD(cnn_small, **WEAK, random_start=False, early_stop=True)(x, y)
    assert 0.05 < full.success_rate < 0.95
    assert not (full.success & ~early.success).any()  # identical or a superset
    assert early.success.sum() <= full.success.sum() + 2
    assert early.steps.double().mean() < full.steps.double().mean()
    assert (full.steps == WEAK["steps"]).all()
    assert (early.steps[~early.success] == WEAK["steps"]).all()
    # A success found at the last iterate (after every step) counts all steps; most stop sooner.
    assert (early.steps[early.success] <= WEAK["steps"]).all()
    assert (early.steps[early.success] < WEAK["steps"]).double().mean() > 0.8
    # Early-stopped samples are adversarial at the point where they stopped.
    assert_success_is_misclassification(cnn_small, early, y)
    check_valid(cnn_small, x, early, eps=WEAK["eps"], norm="linf")


@pytest.mark.parametrize("random_start", [False, True])
def test_early_stop_spends_no_step_on_misclassified_samples(cnn_small, attack_batch, random_start):
    x, y = attack_batch
    # Misclassified samples: those the model gets wrong, plus every fourth image labelled wrongly.
    y_mixed = torch.where(torch.arange(len(y)) % 4 == 0, (y + 1) % 10, y)
    wrong = predict(cnn_small, x) != y_mixed
    assert wrong.sum() >= 40
    res = PGD(cnn_small, eps=0.3, steps=10, early_stop=True, random_start=random_start, seed=0)(x, y_mixed)
    assert (res.steps[wrong] == 0).all()
    assert (res.queries[wrong] == 1).all()
    assert torch.equal(res.x_adv[wrong], x[wrong])
    assert res.success[wrong].all()


def test_a_seed_repeats_a_call_exactly(cnn_small, attack_batch):
    x, y = attack_batch
    x, y = x[:64], y[:64]
    for kwargs in (dict(norm="linf"), dict(norm="l2", eps=1.5), dict(target="random"), dict(restarts=2)):
        kwargs = {"eps": 0.1, "steps": 5, **kwargs}
        attack = PGD(cnn_small, seed=3, **kwargs)
        a, b = attack(x, y), attack(x, y)
        c = PGD(cnn_small, seed=3, **kwargs)(x, y)
        for other in (b, c):
            assert torch.equal(a.x_adv, other.x_adv), kwargs
            assert torch.equal(a.success, other.success) and torch.equal(a.steps, other.steps)
            if a.target is not None:
                assert torch.equal(a.target, other.target)
        d = PGD(cnn_small, seed=4, **kwargs)(x, y)
        assert not torch.equal(a.x_adv, d.x_adv), kwargs  # the random start depends on the seed


def test_a_seeded_call_leaves_the_global_generator_alone(cnn_small, attack_batch):
    x, y = attack_batch
    torch.manual_seed(0)
    state = torch.get_rng_state()
    PGD(cnn_small, eps=0.1, steps=2, target="random", seed=1)(x[:16], y[:16])
    assert torch.equal(torch.get_rng_state(), state)


def test_without_a_seed_the_global_generator_decides(cnn_small, attack_batch):
    x, y = attack_batch
    x, y = x[:32], y[:32]
    attack = PGD(cnn_small, eps=0.1, steps=2, target="random")
    torch.manual_seed(11)
    a = attack(x, y)
    torch.manual_seed(11)
    b = attack(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.target, b.target)


# --- result fields and query counts -----------------------------------------------------------------------

@pytest.mark.parametrize("target", [None, "random"])
def test_result_fields_have_the_right_shapes_and_types(cnn_small, attack_batch, target):
    x, y = attack_batch
    x, y = x[:37], y[:37]
    res = PGD(cnn_small, eps=0.1, steps=3, target=target, seed=0)(x, y)
    n = len(x)
    assert isinstance(res, AttackResult) and len(res) == n
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == torch.float32
    assert not res.x_adv.requires_grad and res.x_adv.grad_fn is None
    assert res.success.shape == (n,) and res.success.dtype == torch.bool
    assert res.steps.shape == (n,) and res.steps.dtype == torch.int64
    assert res.queries.shape == (n,) and res.queries.dtype == torch.int64
    assert res.adv_logits.shape == (n, 10) and res.adv_logits.dtype == torch.float32
    assert res.clean_logits.shape == (n, 10)
    assert not res.adv_logits.requires_grad and not res.clean_logits.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(res.clean_logits, cnn_small(x))
    if target is None:
        assert res.target is None
    else:
        assert res.target.shape == (n,) and res.target.dtype == torch.int64
    assert isinstance(res.success_rate, float)
    assert res.success_rate == pytest.approx(res.success.double().mean().item())
    assert torch.equal(res.adv_pred, res.adv_logits.argmax(1))


class CountingModel(nn.Module):
    """Counts the samples the wrapped model is asked to classify."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.net(x)


@pytest.mark.parametrize("restarts", [1, 2])
@pytest.mark.parametrize("early_stop", [False, True])
def test_queries_count_every_forward_pass(cnn_small, attack_batch, restarts, early_stop):
    x, y = attack_batch
    counting = CountingModel(cnn_small)
    steps = 6
    res = PGD(counting, eps=0.08, steps=steps, restarts=restarts, early_stop=early_stop, seed=0)(x, y)
    assert res.queries.sum().item() == counting.rows
    # One clean forward; per restart one forward per step and one for the last iterate.
    if not early_stop:
        assert (res.steps == restarts * steps).all()
        assert (res.queries == 1 + restarts * (steps + 1)).all()
    else:
        clean_wrong = res.clean_logits.argmax(1) != y
        assert (res.queries[clean_wrong] == 1).all() and (res.steps[clean_wrong] == 0).all()
        if restarts == 1:
            # Each iterate from the start to the last step taken is evaluated once: 1 + (steps + 1).
            assert (res.queries[~clean_wrong] == res.steps[~clean_wrong] + 2).all()
        assert (res.queries >= res.steps + 1).all()
        assert (res.queries <= 1 + restarts * (steps + 1)).all()
        assert res.queries.sum() < len(x) * (1 + restarts * (steps + 1))


def test_fgsm_queries_and_steps(cnn_small, attack_batch):
    x, y = attack_batch
    counting = CountingModel(cnn_small)
    res = FGSM(counting, eps=0.1)(x, y)
    assert (res.steps == 1).all()
    assert (res.queries == 2).all()  # the clean pass (which the gradient reuses), the final point
    assert counting.rows == 2 * len(x)


@pytest.mark.parametrize("make", [lambda m, t: FGSM(m, eps=0.1, target=t, seed=0),
                                  lambda m, t: PGD(m, eps=0.1, steps=4, random_start=False, target=t, seed=0)],
                         ids=["fgsm", "pgd-from-x"])
@pytest.mark.parametrize("target", [None, "least-likely"])
def test_sharing_the_clean_pass_with_the_first_gradient_changes_only_the_query_count(cnn_small, attack_batch, make,
                                                                                    target):
    """From the clean points the clean forward pass is also the first gradient's: the result is the engine's
    without that sharing (``Repeated`` takes the clean pass apart), one query fewer, and no graph outlives it."""
    x, y = attack_batch
    attack = make(cnn_small, target)
    shared, apart = attack(x, y), Repeated(attack, 1)(x, y)
    for name in ("x_adv", "success", "steps", "adv_logits", "clean_logits"):
        assert torch.equal(getattr(shared, name), getattr(apart, name)), name
    assert (target is None and shared.target is None) or torch.equal(shared.target, apart.target)
    assert torch.equal(shared.queries, apart.queries - 1)
    with torch.no_grad():
        torch.testing.assert_close(shared.clean_logits, cnn_small(x), rtol=0, atol=1e-6)
    assert shared.clean_logits.grad_fn is None and not shared.adv_logits.requires_grad
    assert all(p.grad is None for p in cnn_small.parameters())
