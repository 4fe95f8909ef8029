"""The geometry of the L1 ball intersected with the pixel box, for l1-APGD (Croce and Hein 2021, "Mind the box:
l1-APGD for sparse adversarial attacks on image classifiers").

An L1 attack on images must stay in ``{delta : ||delta||_1 <= eps, lo <= x + delta <= hi}``. Projecting onto
the ball and then clipping to the box leaves points that use much less than eps of the budget (the clipped mass
is lost), and the sparse steepest-ascent step wastes its budget on pixels that sit at the box's boundary. Croce
and Hein therefore project onto the intersection (:func:`project_l1_box`) and take the sparse step only over
the coordinates that can still move in the gradient's direction (:func:`sparse_box_step`).
"""

from __future__ import annotations

import torch

__all__ = ["entry_l0", "project_l1_box", "sparse_box_step"]


def project_l1_box(delta: torch.Tensor, eps: float, lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """The closest point to ``delta`` (Euclidean) in ``{d : ||d||_1 <= eps, lower <= d <= upper}``, per sample.

    ``lower <= 0 <= upper`` (for a box around an image ``x``: ``lower = lo - x``, ``upper = hi - x``). By the
    optimality conditions the solution is ``sign(delta_i) * min((|delta_i| - t)+, c_i)``, where ``c_i`` is the
    room of coordinate i in the direction of ``delta_i`` and ``t >= 0`` the smallest threshold at which the L1
    norm is at most eps. The L1 norm as a function of ``t`` is piecewise linear, with kinks where a coordinate
    leaves its cap (``|delta_i| - c_i``) and where it reaches zero (``|delta_i|``): sorting the kinks and summing
    the slopes gives ``t`` exactly in O(d log d).
    """
    shape = delta.shape
    flat = delta.reshape(len(delta), -1)
    low = lower.expand_as(delta).reshape(len(delta), -1)
    high = upper.expand_as(delta).reshape(len(delta), -1)
    magnitude = flat.abs()
    cap = torch.where(flat >= 0, high, -low).clamp_min(0)
    norm0 = torch.minimum(magnitude, cap).double().sum(dim=1)
    t = torch.zeros(len(flat), dtype=torch.float64, device=flat.device)
    over = norm0 > eps
    if over.any():
        t[over] = _threshold(magnitude[over], cap[over], norm0[over], eps)
    result = flat.double().sign() * torch.minimum((magnitude.double() - t[:, None]).clamp_min(0), cap.double())
    # Float rounding must not leave the ball: shrinking towards 0 stays in the box, which contains 0.
    norm = result.abs().sum(dim=1, keepdim=True)
    result = result * torch.where(norm > eps, eps / norm.clamp_min(1e-300), torch.ones_like(norm))
    return result.to(delta.dtype).reshape(shape)


def _threshold(magnitude: torch.Tensor, cap: torch.Tensor, norm0: torch.Tensor, eps: float) -> torch.Tensor:
    """The t > 0 at which ``sum_i min((magnitude_i - t)+, cap_i)`` equals eps, for rows where it exceeds eps at 0
    (sums in double precision)."""
    starts = (magnitude - cap).clamp_min(0)  # from here on coordinate i shrinks with slope -1
    kinks, order = torch.cat([starts, magnitude], dim=1).sort(dim=1)  # in the input's precision: faster
    kinks = kinks.double()
    change = torch.cat([torch.ones_like(starts), -torch.ones_like(magnitude)], dim=1).double().gather(1, order)
    slope = change.cumsum(dim=1)  # coordinates shrinking just after each kink
    gaps = kinks.diff(dim=1)
    value = torch.cat([norm0[:, None], norm0[:, None] - (slope[:, :-1] * gaps).cumsum(dim=1)], dim=1)
    # The first kink at which the norm is at most eps; t lies on the segment just before it.
    after = (value <= eps).float().argmax(dim=1).clamp_min(1)
    before = after - 1
    rows = torch.arange(len(magnitude), device=magnitude.device)
    drop = (value[rows, before] - eps) / slope[rows, before].clamp_min(1)
    return (kinks[rows, before] + drop).clamp(max=kinks[:, -1]).clamp_min(0)


def sparse_box_step(grad: torch.Tensor, x: torch.Tensor, bounds: tuple[float, float], fraction: torch.Tensor,
                    size: torch.Tensor) -> torch.Tensor:
    """The sparse ascent step of l1-APGD: ``size`` (per sample) spread evenly, with the gradient's signs, over
    the ``fraction`` (per sample) of coordinates of largest gradient magnitude among those that can move in
    the gradient's direction (a pixel at ``hi`` with a positive gradient, or at ``lo`` with a negative one,
    cannot)."""
    lo, hi = bounds
    flat, xf = grad.reshape(len(grad), -1), x.reshape(len(x), -1)
    blocked = ((xf >= hi) & (flat > 0)) | ((xf <= lo) & (flat < 0))
    magnitude = flat.abs().masked_fill(blocked, 0)
    d = flat.shape[1]
    k = (fraction * d).ceil().clamp(1, d).long()
    threshold = magnitude.topk(int(k.max()), dim=1).values.gather(1, (k - 1)[:, None])
    chosen = (magnitude >= threshold) & (magnitude > 0)
    count = chosen.sum(dim=1, keepdim=True).clamp_min(1)
    return (flat.sign() * chosen * (size[:, None] / count)).to(grad.dtype).view_as(grad)


def entry_l0(delta: torch.Tensor) -> torch.Tensor:
    """The number of non-zero entries of each sample of ``delta`` (what adapts l1-APGD's sparsity)."""
    return (delta.reshape(len(delta), -1) != 0).sum(dim=1)
