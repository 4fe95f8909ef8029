"""The minimum-norm base: each sample keeps its smallest adversarial point; distances and curves agree with
the returned points; the L1 norm's geometry."""

from __future__ import annotations

import torch
from attack_helpers import distance, predict

from alva.attacks.engine import Run
from alva.attacks.minimum_norm import MinimumNormAttack, MinimumNormResult
from alva.attacks.norms import get_norm


class LineSearch(MinimumNormAttack):
    """Offers x0 + t * sign(grad) for growing t: the smallest successful t per sample is the answer."""

    def __init__(self, model, scales, eps=None, **kwargs):
        super().__init__(model, **kwargs)
        self.norm = get_norm("linf")
        self.scales = scales
        self.set_eps(eps)

    def search(self, run: Run, index, restart):
        rows = run.rows(index)
        x0 = rows.x0.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.loss(self.predict(x0, rows.y), rows.y, rows.target).sum(), x0)
        for t in self.scales:
            with torch.no_grad():
                x = (rows.x0 + t * grad.sign()).clamp(*self.bounds)
                self.offer_points(run, rows, x, self.predict(x, rows.y))
                run.count_queries(rows)


def test_smallest_successful_point_is_kept(cnn_small, attack_batch):
    x, y = attack_batch
    scales = [0.3, 0.2, 0.1, 0.05, 0.02]  # descending: later, smaller successes must replace earlier ones
    result = LineSearch(cnn_small, scales)(x, y)
    assert isinstance(result, MinimumNormResult) and result.norm == "linf"
    clean_wrong = predict(cnn_small, x) != y
    assert (result.distances[clean_wrong] == 0).all()
    broken = result.success & ~clean_wrong
    assert broken.any() and (~result.success).any()
    measured = distance("linf", result.x_adv, x).float()
    assert torch.allclose(result.distances[broken], measured[broken], atol=1e-6)
    assert torch.isinf(result.distances[~result.success]).all()
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    assert (predict(cnn_small, result.x_adv)[broken] != y[broken]).all()
    # The smallest successful scale of each sample, computed directly.
    smallest = torch.full((len(x),), float("inf"))
    for t in sorted(scales, reverse=True):
        with torch.no_grad():
            xt = LineSearch(cnn_small, [t])(x, y).x_adv
        hit = (predict(cnn_small, xt) != y) & (distance("linf", xt, x).float() > 0)
        smallest = torch.where(hit, distance("linf", xt, x).float(), smallest)
    assert torch.allclose(result.distances[broken], smallest[broken], atol=1e-6)


def test_curve_and_eps(cnn_small, attack_batch):
    x, y = attack_batch
    result = LineSearch(cnn_small, [0.3, 0.1, 0.05])(x, y)
    curve = result.curve([0.0, 0.05, 0.1, 0.3])
    assert curve == sorted(curve, reverse=True)
    assert curve[0] == (predict(cnn_small, x) == y).float().mean().item()
    bounded = LineSearch(cnn_small, [0.3, 0.1, 0.05], eps=0.1)(x, y)
    assert (bounded.distances <= 0.1 + 1e-6).sum() == bounded.success.sum()
    assert bounded.success_rate == 1 - result.robust_accuracy(0.1)


def test_l1_projection_and_ball():
    norm = get_norm("l1")
    delta = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    projected = norm.project(delta, 5.0)
    assert torch.allclose(norm.measure(projected), torch.full((6,), 5.0), atol=1e-4)
    # The projection is the closest point of the ball: no random point of the ball is closer.
    ball = norm.random_in_ball(delta.repeat(50, 1, 1, 1), 5.0, torch.Generator().manual_seed(1))
    gap = (delta.repeat(50, 1, 1, 1) - ball).reshape(300, -1).norm(dim=1).view(50, 6)
    assert ((delta - projected).reshape(6, -1).norm(dim=1) <= gap.min(dim=0).values + 1e-5).all()
    assert (norm.measure(ball) <= 5.0 + 1e-4).all()
    small = delta * 1e-3
    assert torch.equal(norm.project(small, 5.0), small)
    step = norm.ascent_step(delta, 2.0)
    assert torch.allclose(norm.measure(step), torch.full((6,), 2.0))
    assert ((step * delta) >= 0).all()
