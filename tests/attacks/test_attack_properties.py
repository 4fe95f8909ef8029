"""Properties of PGD and FGSM on any batch shape: x_adv stays in the eps ball and the pixel bounds, and the
result agrees with the model.

A tiny random model (flatten, linear) is built for each drawn shape; the inputs have pixels on the
bounds as well as inside them, so that clamping matters.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from alva.attacks import FGSM, PGD
from alva.attacks.losses import get_loss

ORDS = {"linf": math.inf, "l2": 2}
TOL = 1e-5
NUM_CLASSES = 10


def distance(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm((a - b).reshape(len(a), -1).double(), ord=ORDS[name], dim=1)


def tiny_model(shape: tuple[int, ...], seed: int, conv: bool) -> nn.Module:
    """A random classifier for inputs of ``shape`` (N x C x H x W or N x D)."""
    g = torch.Generator().manual_seed(seed)
    if conv and len(shape) == 4:
        model = nn.Sequential(nn.Conv2d(shape[1], 3, 3, padding=1), nn.Tanh(), nn.Flatten(),
                              nn.Linear(3 * shape[2] * shape[3], NUM_CLASSES))
    else:
        model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape[1:]), NUM_CLASSES))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def batch(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1], about a fifth of the pixels exactly 0 and a fifth exactly 1, and labels."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g)
    r = torch.rand(shape, generator=g)
    x = torch.where(r < 0.2, torch.zeros_like(x), torch.where(r > 0.8, torch.ones_like(x), x))
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=g)
    return x, y


@st.composite
def shapes(draw) -> tuple[int, ...]:
    n = draw(st.integers(1, 8))
    if draw(st.booleans()):
        return (n, draw(st.integers(1, 3)), draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    return (n, draw(st.integers(1, 50)))


def check_result(model, x, y, res, *, eps, norm, target=None, loss="ce"):
    """The invariants every attack result satisfies."""
    n = len(x)
    assert res.x_adv.shape == x.shape and res.x_adv.dtype == x.dtype
    assert (distance(norm, res.x_adv, x) <= eps + TOL).all(), distance(norm, res.x_adv, x).max()
    assert res.x_adv.min() >= 0 and res.x_adv.max() <= 1
    assert res.success.shape == (n,) and res.success.dtype == torch.bool
    assert res.steps.shape == (n,) and res.queries.shape == (n,)
    with torch.no_grad():
        clean_logits, adv_logits = model(x), model(res.x_adv)
    torch.testing.assert_close(res.clean_logits, clean_logits, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.adv_logits, adv_logits, rtol=1e-4, atol=1e-5)
    labels = y if target is None else target
    pred = res.adv_logits.argmax(1)
    assert torch.equal(res.success, pred == target if target is not None else pred != y)
    # Each sample keeps its worst case: a success, else a loss at least that of the clean input.
    objective = get_loss(loss)
    adv_loss = objective(res.adv_logits, labels, target is not None)
    clean_loss = objective(res.clean_logits, labels, target is not None)
    assert (res.success | (adv_loss >= clean_loss - 1e-5 * (1 + clean_loss.abs()))).all()
    if eps == 0:
        assert torch.equal(res.x_adv, x)


@settings(max_examples=80, deadline=None)
@given(
    shape=shapes(),
    seed=st.integers(0, 2**31 - 1),
    conv=st.booleans(),
    norm=st.sampled_from(["linf", "l2"]),
    eps=st.one_of(st.just(0.0), st.floats(0.0, 2.0)),
    steps=st.integers(1, 5),
    random_start=st.booleans(),
    restarts=st.integers(1, 2),
    early_stop=st.booleans(),
    loss=st.sampled_from(["ce", "margin"]),
    targeted=st.booleans(),
)
def test_pgd_stays_in_the_ball_and_the_bounds(shape, seed, conv, norm, eps, steps, random_start, restarts,
                                              early_stop, loss, targeted):
    model = tiny_model(shape, seed, conv)
    x, y = batch(shape, seed + 1)
    target = (y + 1 + torch.arange(len(y)) % (NUM_CLASSES - 1)) % NUM_CLASSES if targeted else None
    attack = PGD(model, eps=eps, steps=steps, norm=norm, random_start=random_start, restarts=restarts,
                 early_stop=early_stop, loss=loss, seed=seed)
    res = attack(x, y, target)
    check_result(model, x, y, res, eps=eps, norm=norm, target=target, loss=loss)
    assert (res.steps >= 0).all() and (res.steps <= restarts * steps).all()
    if not early_stop:  # at eps 0 the ball is x itself: no step is taken, the clean pass decides
        assert (res.steps == (0 if eps == 0 else restarts * steps)).all()
    # The input is not modified.
    assert torch.equal(x, batch(shape, seed + 1)[0])


@settings(max_examples=40, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["linf", "l2"]),
       eps=st.floats(0.0, 2.0))
def test_fgsm_stays_in_the_ball_and_the_bounds(shape, seed, norm, eps):
    model = tiny_model(shape, seed, conv=False)
    x, y = batch(shape, seed + 1)
    res = FGSM(model, eps=eps, norm=norm)(x, y)
    check_result(model, x, y, res, eps=eps, norm=norm)
    assert (res.steps == (0 if eps == 0 else 1)).all()


@settings(max_examples=30, deadline=None)
@given(shape=shapes(), seed=st.integers(0, 2**31 - 1), norm=st.sampled_from(["linf", "l2"]),
       eps=st.floats(0.0, 2.0), low=st.floats(-2.0, 0.5), width=st.floats(0.1, 3.0))
def test_pgd_respects_custom_bounds(shape, seed, norm, eps, low, width):
    model = tiny_model(shape, seed, conv=False)
    lo, hi = torch.tensor([low, low + width]).tolist()  # bounds that float32 pixels can take exactly
    x01, y = batch(shape, seed + 1)
    x = (lo + (hi - lo) * x01).clamp(lo, hi)
    res = PGD(model, eps=eps, steps=3, norm=norm, bounds=(lo, hi), seed=seed)(x, y)
    assert (distance(norm, res.x_adv, x) <= eps + TOL).all()
    assert res.x_adv.min() >= lo and res.x_adv.max() <= hi
