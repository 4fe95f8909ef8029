"""Threat models (alva.attacks.norms): measure, project, random_in_ball and ascent_step under L-inf, L2, L1 and L0.

Norms are checked against torch.linalg.vector_norm (L0: a count of the changed pixels written here); balls are
checked with a small tolerance for float32 rounding.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alva.attacks import L0, L2, NORMS, Linf, Norm, get_norm

ORDS = {"linf": math.inf, "l2": 2, "l1": 1}
TOL = 1e-5
CHANGED = 1e-6  # L0: a pixel has changed when some channel moved by more than this

shapes = st.tuples(
    st.integers(1, 8),
    st.lists(st.integers(1, 12), min_size=1, max_size=3),
).map(lambda t: (t[0], *t[1]))
norm_names = st.sampled_from(sorted(NORMS))
radii = st.floats(0.0, 2.0, allow_nan=False)
seeds = st.integers(0, 2**31 - 1)
hyp = settings(max_examples=60, deadline=None)


def pixel_magnitudes(t: torch.Tensor) -> torch.Tensor:
    """n x pixels: the largest change over the channels (dim 1 of a 4-D or higher batch) of each pixel."""
    return (t.abs().amax(dim=1) if t.ndim >= 4 else t.abs()).reshape(len(t), -1)


def reference_norm(name: str, t: torch.Tensor) -> torch.Tensor:
    if name == "l0":
        return (pixel_magnitudes(t) > CHANGED).sum(dim=1).double()
    return torch.linalg.vector_norm(t.reshape(len(t), -1).double(), ord=ORDS[name], dim=1)


def into_ball(name: str, delta: torch.Tensor, eps: float, frac: float = 1.0) -> torch.Tensor:
    """A point of the eps ball made from delta: scaled to frac * eps (L_p), or delta on its first floor(eps)
    pixels, zero elsewhere (L0)."""
    if name == "l0":
        shape = (len(delta), 1, *delta.shape[2:]) if delta.ndim >= 4 else delta.shape
        first = torch.arange(math.prod(shape[1:])).view(1, *shape[1:]) < math.floor(eps)
        return delta * first
    factor = (frac * eps / reference_norm(name, delta).clamp_min(1e-12)).clamp(max=1.0).float()
    return delta * factor.view(-1, *[1] * (delta.ndim - 1))


def random_delta(shape: tuple[int, ...], seed: int, scale: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


def test_registry_and_names():
    assert isinstance(NORMS["linf"], Linf) and isinstance(NORMS["l2"], L2) and isinstance(NORMS["l0"], L0)
    for alias in ("l0", "L0", "0", "l_0"):
        assert isinstance(get_norm(alias), L0), alias
    for alias in ("linf", "Linf", "LINF", "l-inf", "l_inf", "inf"):
        assert isinstance(get_norm(alias), Linf), alias
    for alias in ("l2", "L2", "2"):
        assert isinstance(get_norm(alias), L2), alias
    own = L2()
    assert get_norm(own) is own
    assert repr(get_norm("linf")) == "linf"


@pytest.mark.parametrize("name", ["l3", "l00", "", "euclid"])
def test_unknown_norm_is_a_value_error(name):
    with pytest.raises(ValueError, match="unknown norm"):
        get_norm(name)


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, scale=st.floats(1e-3, 10.0))
def test_measure_matches_torch(name, shape, seed, scale):
    delta = random_delta(shape, seed, scale)
    got = get_norm(name).measure(delta)
    assert got.shape == (shape[0],)
    torch.testing.assert_close(got.double(), reference_norm(name, delta), rtol=1e-5, atol=1e-6)


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, scale=st.floats(1e-3, 10.0), eps=radii)
def test_project_lands_in_the_ball_and_is_idempotent(name, shape, seed, scale, eps):
    norm = get_norm(name)
    delta = random_delta(shape, seed, scale)
    proj = norm.project(delta, eps)
    assert proj.shape == delta.shape and proj.dtype == delta.dtype
    assert torch.isfinite(proj).all()
    assert (reference_norm(name, proj) <= eps + TOL).all()
    torch.testing.assert_close(norm.project(proj, eps), proj, rtol=1e-5, atol=1e-6)


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, eps=st.floats(1e-3, 2.0), frac=st.floats(0.0, 0.99))
def test_project_keeps_points_inside_the_ball(name, shape, seed, eps, frac):
    norm = get_norm(name)
    delta = random_delta(shape, seed, 1.0)
    inside = into_ball(name, delta, eps, frac)
    # L0 zeroes the pixels that count as unchanged (every channel within CHANGED of 0).
    torch.testing.assert_close(norm.project(inside, eps), inside, rtol=0, atol=CHANGED if name == "l0" else 1e-7)


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, scale=st.floats(1e-2, 10.0), eps=radii)
def test_project_is_the_closest_point_of_the_ball(name, shape, seed, scale, eps):
    """No point of the ball (random ones, the scaled-down delta) is closer to delta than its projection."""
    norm = get_norm(name)
    delta = random_delta(shape, seed, scale)
    proj = norm.project(delta, eps)
    dist = reference_norm("l2", delta - proj)
    g = torch.Generator().manual_seed(seed + 1)
    candidates = [norm.random_in_ball(delta, eps, g) for _ in range(8)]
    candidates.append(into_ball(name, delta, eps))
    for q in candidates:
        assert (dist <= reference_norm("l2", delta - q) + 1e-4).all()


@hyp
@given(shape=shapes, seed=seeds, scale=st.floats(1.5, 10.0), eps=st.floats(1e-2, 1.0))
def test_l2_project_scales_outside_points_onto_the_sphere(shape, seed, scale, eps):
    delta = random_delta(shape, seed, 1.0)
    delta = delta / reference_norm("l2", delta).float().view(-1, *[1] * (len(shape) - 1)) * (scale * eps)
    proj = L2().project(delta, eps)
    torch.testing.assert_close(reference_norm("l2", proj), torch.full((shape[0],), eps, dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)
    # Same direction: proj is a positive multiple of delta.
    dot = (proj * delta).reshape(shape[0], -1).sum(1).double()
    cos = dot / (reference_norm("l2", proj) * reference_norm("l2", delta))
    torch.testing.assert_close(cos, torch.ones_like(cos), rtol=0, atol=1e-5)


def test_linf_project_is_the_coordinatewise_clamp():
    delta = torch.tensor([[0.5, -0.5, 0.1, -0.1, 0.0], [2.0, -3.0, 0.25, -0.25, 0.3]])
    expected = torch.tensor([[0.25, -0.25, 0.1, -0.1, 0.0], [0.25, -0.25, 0.25, -0.25, 0.25]])
    torch.testing.assert_close(Linf().project(delta, 0.25), expected)


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, eps=radii)
def test_random_in_ball_is_inside_and_repeats_with_its_generator(name, shape, seed, eps):
    norm = get_norm(name)
    like = torch.zeros(shape)
    a = norm.random_in_ball(like, eps, torch.Generator().manual_seed(seed))
    b = norm.random_in_ball(like, eps, torch.Generator().manual_seed(seed))
    assert a.shape == like.shape and a.dtype == like.dtype
    assert torch.isfinite(a).all()
    assert (reference_norm(name, a) <= eps + TOL).all()
    assert torch.equal(a, b)
    if eps == 0:
        assert (a == 0).all()


def ks_uniform(samples: torch.Tensor) -> float:
    """Kolmogorov-Smirnov distance between the samples and Uniform(0, 1)."""
    s, _ = torch.sort(samples.double().flatten())
    n = len(s)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n - s
    lower = s - torch.arange(0, n, dtype=torch.float64) / n
    return max(upper.max().item(), lower.max().item())


@pytest.mark.parametrize("dim", [1, 2, 3, 5])
def test_l2_random_in_ball_is_uniform_in_low_dimensions(dim):
    """Uniform in the ball: (r / eps)^d ~ U(0, 1), so radii are spread over [0, eps] and not on the sphere."""
    n, eps = 20000, 0.7
    sample = L2().random_in_ball(torch.zeros(n, dim), eps, torch.Generator().manual_seed(dim))
    r = sample.norm(dim=1) / eps
    assert r.max() <= 1 + 1e-6
    # KS critical value at n = 20000 for alpha = 1e-3 is about 0.0138.
    assert ks_uniform(r.pow(dim)) < 0.015
    # Radii are spread: a quarter of the samples lie inside half the radius for d = 2 (1/2**d in general).
    assert abs((r < 0.5).double().mean().item() - 0.5**dim) < 0.015
    # Directions are uniform: they average to ~0.
    directions = sample / sample.norm(dim=1, keepdim=True)
    assert directions.mean(0).abs().max() < 0.03


def test_l2_random_in_ball_radii_in_high_dimension():
    """In d = 784 a uniform sample's radius is eps * U^(1/d): mean eps * d/(d+1), strictly inside the ball."""
    n, dim, eps = 4000, 784, 2.0
    sample = L2().random_in_ball(torch.zeros(n, 1, 28, 28), eps, torch.Generator().manual_seed(0))
    r = reference_norm("l2", sample) / eps
    assert r.max() <= 1 + 1e-6
    assert abs(r.mean().item() - dim / (dim + 1)) < 2e-4
    assert (r < 1 - 1e-4).double().mean() > 0.8  # P(U^(1/d) < 1 - 1e-4) = (1 - 1e-4)^d ~ 0.92
    assert r.std() > 2e-4


def test_linf_random_in_ball_is_uniform_in_the_cube():
    eps = 0.3
    sample = Linf().random_in_ball(torch.zeros(500, 1, 8, 8), eps, torch.Generator().manual_seed(0))
    assert sample.abs().max() <= eps
    assert ks_uniform((sample + eps) / (2 * eps)) < 0.015  # 32000 values: critical value ~0.011 at 1e-3


def test_random_in_ball_without_a_generator_uses_the_global_one():
    like = torch.zeros(4, 3, 5, 5)
    for norm in NORMS.values():
        torch.manual_seed(123)
        a = norm.random_in_ball(like, 0.5, None)
        torch.manual_seed(123)
        b = norm.random_in_ball(like, 0.5, None)
        assert torch.equal(a, b)
        assert (norm.measure(a) <= 0.5 + TOL).all()


@hyp
@given(name=norm_names, shape=shapes, seed=seeds, alpha=st.floats(1e-3, 2.0))
def test_ascent_step_has_size_alpha_and_is_steepest(name, shape, seed, alpha):
    """The step has norm alpha (L0: ceil(alpha) pixels) and a larger inner product with the gradient than any
    point of its ball."""
    norm = get_norm(name)
    grad = random_delta(shape, seed, 1.0)
    step = norm.ascent_step(grad.clone(), alpha)
    assert step.shape == grad.shape
    gain = (step * grad).reshape(shape[0], -1).double().sum(1)
    if name == "l0":
        # ceil(alpha) pixels (all there are, if fewer) moved by the sign of the gradient: within the unit cube,
        # the largest gain of any point changing that many pixels (the sum of their largest channel-L1 gradients).
        pixels = pixel_magnitudes(step).shape[1]
        k = min(math.ceil(alpha), pixels)
        assert (reference_norm("l0", step) == k).all() and step.abs().max() <= 1
        channel_l1 = grad.abs().sum(dim=1) if grad.ndim >= 4 else grad.abs()
        best = channel_l1.reshape(shape[0], -1).double().topk(k, dim=1).values.sum(dim=1)
        torch.testing.assert_close(gain, best, rtol=1e-5, atol=1e-6)
    else:
        expected = torch.full((shape[0],), alpha, dtype=torch.float64)
        torch.testing.assert_close(reference_norm(name, step), expected, rtol=1e-5, atol=1e-6)
        # The dual norm of the gradient: L2 for L2, L1 for L-inf, L-inf for L1.
        dual = torch.linalg.vector_norm(grad.reshape(shape[0], -1).double(),
                                        ord={"l2": 2, "linf": 1, "l1": math.inf}[name], dim=1)
        if name == "l1":
            # The sparse L1 step spreads alpha over the largest coordinates: at most steepest, never against it.
            assert (gain <= alpha * dual + 1e-6).all() and (gain > 0).all()
        else:
            torch.testing.assert_close(gain, alpha * dual, rtol=1e-4, atol=1e-6)
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(4):
        other = norm.random_in_ball(grad, alpha, g)
        assert ((other * grad).reshape(shape[0], -1).double().sum(1) <= gain + 1e-4).all()


@pytest.mark.parametrize("name", sorted(NORMS))
def test_ascent_step_of_a_zero_gradient_is_zero(name):
    step = get_norm(name).ascent_step(torch.zeros(3, 1, 4, 4), 0.5)
    assert torch.isfinite(step).all() and (step == 0).all()


def test_base_norm_is_abstract():
    base = Norm()
    x = torch.zeros(2, 3)
    for call in (lambda: base.measure(x), lambda: base.project(x, 1.0), lambda: base.ascent_step(x, 1.0),
                 lambda: base.random_in_ball(x, 1.0, None)):
        with pytest.raises(NotImplementedError):
            call()


def test_l0_counts_pixels_and_projection_keeps_the_largest():
    """A pixel counts once whatever the number of its channels that changed; the projection keeps the pixels of
    largest energy (sum of squares over the channels) and zeroes the rest; each sample has its own radius."""
    delta = torch.zeros(2, 3, 2, 2)
    delta[0, :, 0, 0] = 0.5           # energy 0.75 in three channels: one pixel
    delta[0, 0, 0, 1] = 0.8           # energy 0.64
    delta[0, 2, 1, 1] = -0.7          # energy 0.49
    delta[0, 1, 1, 0] = 5e-7          # below the threshold: unchanged
    delta[1, 1, 1, 1] = 0.2
    norm = get_norm("l0")
    assert norm.measure(delta).tolist() == [3.0, 1.0]
    kept = norm.project(delta, 2.5)
    expected = delta.clone()
    expected[0, 2, 1, 1] = 0
    expected[0, 1, 1, 0] = 0
    assert torch.equal(kept, expected)
    each = norm.project_each(delta, torch.tensor([1.0, 0.0]))
    assert torch.equal(each[0, :, 0, 0], delta[0, :, 0, 0]) and norm.measure(each).tolist() == [1.0, 0.0]
    flat = delta.reshape(2, -1)  # N x D: every entry is a pixel
    assert norm.measure(flat).tolist() == [5.0, 1.0]


@pytest.mark.parametrize("name", sorted(NORMS))
def test_project_each_is_project_with_each_samples_radius(name):
    norm = get_norm(name)
    delta = random_delta((4, 3, 5, 5), 7, 1.0)
    radii = [0.0, 0.5, 2.0, 40.0]
    each = norm.project_each(delta, torch.tensor(radii))
    for i, eps in enumerate(radii):
        torch.testing.assert_close(each[i:i + 1], norm.project(delta[i:i + 1], eps), rtol=1e-5, atol=1e-6)


def test_l0_random_in_ball_changes_floor_eps_pixels():
    like = torch.zeros(500, 3, 6, 6)
    sample = L0().random_in_ball(like, 4.7, torch.Generator().manual_seed(0))
    assert (reference_norm("l0", sample) == 4).all() and sample.abs().max() <= 1
    # The pixels are spread over the image: every position is chosen about 4/36 of the time.
    chosen = (sample.abs().amax(dim=1) > 0).double().mean(dim=0)
    assert (chosen - 4 / 36).abs().max() < 0.06


@pytest.mark.parametrize("side", [1, 3, 7])
def test_linf_square_proposal_sets_one_square_to_a_corner_of_the_ball(side):
    # The proposal differs from the current point only inside one side x side square per sample, where each
    # channel sits at x0 + eps or x0 - eps (clipped to the box); it always changes something (no wasted query).
    g = torch.Generator().manual_seed(side)
    x0 = torch.rand(40, 3, 12, 12, generator=g)
    eps = 0.25
    cur = (x0 + eps * torch.randint(0, 2, x0.shape, generator=g) * 2 - eps).clamp(0, 1)
    cur[:5] = (x0[:5] + eps).clamp(0, 1)  # some already at +eps everywhere: those must get -eps
    numbers = torch.rand(40, 5, generator=g)
    cand = get_norm("linf").square_proposal(x0, cur, eps, side, lambda k: numbers[:, :k], (0.0, 1.0))
    assert cand.shape == x0.shape
    changed = (cand != cur).any(dim=1)  # n x h x w
    assert changed.flatten(1).any(dim=1).all()
    plus, minus = (x0 + eps).clamp(0, 1), (x0 - eps).clamp(0, 1)
    for i in range(40):
        rows, cols = changed[i].nonzero(as_tuple=True)
        assert rows.max() - rows.min() < side and cols.max() - cols.min() < side
        for ch in range(3):  # one sign per channel: every changed entry at x0 + eps, or every one at x0 - eps
            moved = cand[i, ch] != cur[i, ch]
            at_plus, at_minus = cand[i, ch] == plus[i, ch], cand[i, ch] == minus[i, ch]
            assert (at_plus | ~moved).all() or (at_minus | ~moved).all()
