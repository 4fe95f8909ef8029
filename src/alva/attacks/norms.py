"""Threat models as small classes: all the geometry and sampling of an eps ball.

A norm measures a perturbation, projects onto its eps ball, gives the steepest-ascent step (the dual norm
of the gradient), samples a uniform point of the ball, and makes the Square Attack's starting points and
proposals. Attacks are written once against this interface (after foolbox 3's gradient-descent
template): adding a threat model is one new :class:`Norm` subclass here and one entry in :data:`NORMS`.

Sampling reads uniform numbers from a :data:`~alva.attacks.keyed.Uniform` (``k -> n x k`` numbers in
[0, 1)), so that the attacks can key them per sample (:class:`~alva.attacks.keyed.KeyedRandom`).
"""

from __future__ import annotations

import math

import torch

from alva.attacks.keyed import Uniform, generator_uniform
from alva.attacks.square_geometry import corner, pyramid, signs, split_pyramid, window, window_index

__all__ = ["L0", "L1", "L2", "NORMS", "Linf", "Norm", "as_uniform", "get_norm", "per_sample", "pixel_view"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(len(t), -1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector so that it broadcasts over ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def as_uniform(source: Uniform | torch.Generator | None, like: torch.Tensor) -> Uniform:
    """``source`` as a :data:`Uniform` for the samples of ``like``: a Uniform as it is, else numbers drawn
    from the torch generator (the global one when None)."""
    if callable(source):
        return source
    return generator_uniform(len(like), source, like.device, like.dtype)


class Norm:
    """An L_p threat model."""

    name: str = ""

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``delta``."""
        raise NotImplementedError

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """The steepest-ascent step of size ``alpha`` under this norm (``alpha`` times the dual-norm direction)."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """The closest point of the eps ball to ``delta``."""
        raise NotImplementedError

    def project_each(self, delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """The closest point to ``delta`` of the ball of radius ``eps[i]`` for each sample ``i`` (default: by
        homogeneity, ``eps * project(delta / eps, 1)``, which holds for every L_p norm with p >= 1)."""
        radius = per_sample(eps.to(delta.dtype), delta)
        unit = self.project(delta / radius.clamp_min(1e-30), 1.0)
        return torch.where(radius > 0, unit * radius, torch.zeros_like(delta))

    def ascend(self, x: torch.Tensor, grad: torch.Tensor, center: torch.Tensor, alpha: float, eps: float
               ) -> torch.Tensor:
        """``x`` plus the ascent step of size ``alpha`` along ``grad``, projected onto the eps ball around
        ``center``: one PGD step before the pixel bounds.

        May overwrite ``grad`` (give it a gradient not needed afterwards); never ``x`` or ``center``.
        """
        return center + self.project(x + self.ascent_step(grad, alpha) - center, eps)

    def random_in_ball(self, like: torch.Tensor, eps: float, source: Uniform | torch.Generator | None
                       ) -> torch.Tensor:
        """A sample uniformly distributed in the eps ball, one per sample of ``like``; the numbers come from
        ``source``: a :data:`~alva.attacks.keyed.Uniform`, a torch generator, or None (torch's global one)."""
        raise NotImplementedError

    def square_start(self, x0: torch.Tensor, eps: float, uniform: Uniform, bounds: tuple[float, float]
                     ) -> torch.Tensor:
        """The Square Attack's starting point for the images ``x0`` (n x c x h x w)."""
        raise NotImplementedError(f"the Square Attack has no proposals for the norm {self!r}")

    def square_proposal(self, x0: torch.Tensor, cur: torch.Tensor, eps: float, side: int, uniform: Uniform,
                        bounds: tuple[float, float]) -> torch.Tensor:
        """A Square Attack candidate: ``cur`` changed on a random ``side`` x ``side`` window."""
        raise NotImplementedError(f"the Square Attack has no proposals for the norm {self!r}")

    def __repr__(self) -> str:
        return self.name


class Linf(Norm):
    name = "linf"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().amax(dim=1)

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        return grad.sign().mul_(alpha)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return delta.clamp(-eps, eps)

    def ascend(self, x: torch.Tensor, grad: torch.Tensor, center: torch.Tensor, alpha: float, eps: float
               ) -> torch.Tensor:
        # The arithmetic of Norm.ascend, in place in grad's memory, so that a step allocates nothing.
        return grad.sign_().mul_(alpha).add_(x).sub_(center).clamp_(-eps, eps).add_(center)

    def random_in_ball(self, like, eps, source):
        u = as_uniform(source, like)(like[0].numel())
        return (u * 2 - 1).mul_(eps).view_as(like).to(like.dtype)

    def square_start(self, x0, eps, uniform, bounds):
        # Vertical stripes: one sign per channel and column.
        n, c, _, w = x0.shape
        sign = signs(uniform(c * w).view(n, c, 1, w), x0.dtype)
        return (x0 + eps * sign).clamp_(*bounds)

    def square_proposal(self, x0, cur, eps, side, uniform, bounds):
        n, c, h, w = x0.shape
        u = uniform(2 + c)
        # Only the square changes: its entries are gathered, set and written back into a copy of cur.
        index = window_index(corner(u[:, 0], h, side), corner(u[:, 1], w, side), side, w)
        index = index[:, None, :].expand(n, c, side * side)
        base = x0.reshape(n, c, h * w).gather(2, index)
        sign = signs(u[:, 2:], x0.dtype).view(n, c, 1)
        square = (base + eps * sign).clamp(*bounds)
        # A step that changes nothing would waste a query: there, use the opposite signs.
        same = ~(square != cur.reshape(n, c, h * w).gather(2, index)).reshape(n, -1).any(dim=1)
        if same.any():
            square = torch.where(same.view(n, 1, 1), (base - eps * sign).clamp(*bounds), square)
        return cur.reshape(n, c, h * w).clone().scatter_(2, index, square).view(n, c, h, w)


class L2(Norm):
    name = "l2"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(dim=1)

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        norms = self.measure(grad).clamp_min(1e-12)
        return grad * per_sample(alpha / norms, grad)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        norms = self.measure(delta)
        factor = torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
        return delta * per_sample(factor, delta)

    def random_in_ball(self, like, eps, source):
        d = like[0].numel()
        u = as_uniform(source, like)(2 * d + 1)
        # Box-Muller normals give a uniform direction; the radius has density proportional to r^(d-1).
        normal = torch.sqrt(-2 * torch.log1p(-u[:, :d])) * torch.cos(2 * math.pi * u[:, d:2 * d])
        radius = eps * u[:, 2 * d].pow(1.0 / d)
        direction = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return (direction * radius[:, None]).view_as(like).to(like.dtype)

    def square_start(self, x0, eps, uniform, bounds):
        # A grid of pyramid-shaped bumps with random signs, scaled to norm eps.
        n, c, h, w = x0.shape
        tile = max(min(h, w) // 5, 1)
        th, tw = -(-h // tile), -(-w // tile)
        sign = signs(uniform(c * th * tw).view(n, c, th, tw), x0.dtype)
        tiled = sign.repeat_interleave(tile, 2).repeat_interleave(tile, 3)[:, :, :h, :w]
        delta = tiled * pyramid(tile, tile, x0.device, x0.dtype).repeat(th, tw)[:h, :w]
        delta = delta * (eps / delta.reshape(n, -1).norm(dim=1).clamp_min(1e-12)).view(n, 1, 1, 1)
        return (x0 + delta).clamp_(*bounds)

    def square_proposal(self, x0, cur, eps, side, uniform, bounds):
        # Move the perturbation's mass in two squares (plus the unused budget) into the first one, as a pair
        # of opposite pyramids with a random sign, keeping the norm at eps.
        n, c, h, w = x0.shape
        s = side
        u = uniform(5 + c)
        top1, left1 = corner(u[:, 0], h, s), corner(u[:, 1], w, s)
        first = window(top1, left1, s, h, w)
        both = first | window(corner(u[:, 2], h, s), corner(u[:, 3], w, s), s, h, w)
        nu = cur - x0
        unused = (eps**2 - nu.reshape(n, -1).pow(2).sum(dim=1)).clamp_min(0)
        mass = (nu.pow(2) * both).sum(dim=(2, 3)).add(unused[:, None] / c).sqrt()  # n x c
        # The pattern on the first square, transposed for about half the samples.
        pattern = split_pyramid(s, x0.device, x0.dtype)
        patterns = torch.stack([pattern, pattern.T])
        r = (torch.arange(h, device=x0.device)[None, :] - top1[:, None]).clamp(0, s - 1)
        q = (torch.arange(w, device=x0.device)[None, :] - left1[:, None]).clamp(0, s - 1)
        which = (u[:, 4] < 0.5).long()
        placed = patterns[which[:, None, None], r[:, :, None], q[:, None, :]][:, None] * first
        placed = placed / placed.reshape(n, -1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)
        sign = signs(u[:, 5:], x0.dtype).view(n, c, 1, 1)
        old = nu * first
        old = old / old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        direction = (sign * placed + old) * first
        direction = direction / direction.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        new = torch.where(both, direction * mass[:, :, None, None], nu)
        new = self.project(new, eps)  # only float rounding can take it outside
        return (x0 + new).clamp_(*bounds)


class L1(Norm):
    """The L1 threat model. Its steepest-ascent step spreads ``alpha`` over the coordinates of largest
    gradient magnitude (the top ``sparsity`` fraction, the sparse L1 descent of Tramer and Boneh 2019), since the
    exact steepest step moves a single coordinate; the projection is the sort-based one of Duchi et al. 2008."""

    name = "l1"

    def __init__(self, sparsity: float = 0.01) -> None:
        self.sparsity = sparsity

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).abs().sum(dim=1)

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        flat = _flat(grad)
        k = max(1, int(round(self.sparsity * flat.shape[1])))
        threshold = flat.abs().topk(k, dim=1).values[:, -1:]
        chosen = (flat.abs() >= threshold) & (flat != 0)
        count = chosen.sum(dim=1, keepdim=True).clamp_min(1)
        return (flat.sign() * chosen * (alpha / count)).view_as(grad)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        flat = _flat(delta)
        magnitude = flat.abs()
        outside = magnitude.sum(dim=1) > eps
        if not outside.any():
            return delta.clone()
        # Duchi et al.: the soft threshold theta at which the shrunk magnitudes sum to eps.
        ordered = magnitude.sort(dim=1, descending=True).values
        cumulative = ordered.cumsum(dim=1) - eps
        index = torch.arange(1, flat.shape[1] + 1, device=delta.device, dtype=delta.dtype)
        count = (ordered * index > cumulative).sum(dim=1, keepdim=True).clamp_min(1)
        theta = cumulative.gather(1, count - 1) / count
        shrunk = flat.sign() * (magnitude - theta.clamp_min(0)).clamp_min(0)
        return torch.where(outside[:, None], shrunk, flat).view_as(delta)

    def random_in_ball(self, like, eps, source):
        d = like[0].numel()
        u = as_uniform(source, like)(2 * d + 1)
        # d + 1 exponentials normalised by their sum: uniform in the simplex {t >= 0, sum t <= 1}; random signs
        # make it uniform in the L1 ball.
        spacing = -torch.log1p(-u[:, :d + 1])
        point = spacing[:, :d] / spacing.sum(dim=1, keepdim=True)
        sign = torch.where(u[:, d + 1:] < 0.5, -1.0, 1.0)
        return (point * sign * eps).view_as(like).to(like.dtype)


def pixel_view(t: torch.Tensor) -> torch.Tensor:
    """``t`` as ``n x channels x pixels``: a pixel of an ``N x C x H x W`` (or higher) batch is a position with its
    ``C`` channels (dim 1); in any other batch each entry is a pixel with one channel."""
    return t.reshape(len(t), t.shape[1] if t.ndim >= 4 else 1, -1)


class L0(Norm):
    """The L0 threat model: the number of pixels changed. A pixel is a position of the image: the ``C`` channels
    of an ``N x C x H x W`` batch count once, as everywhere in alva (:func:`alva.attacks.sparse.pixel_l0`, the
    L0 of the attack reports); it has changed when some channel moved by more than ``changed`` (1e-6 as there).

    The ball of radius eps holds the perturbations that change at most ``floor(eps)`` pixels, by any amount. Its
    projection keeps the ``floor(eps)`` changed pixels of largest energy (sum of squares over the channels), the
    closest point of the ball in L2, and zeroes the others. The ascent step and the random points live in the
    ball intersected with the cube ``[-1, 1]`` per entry (the range of images in [0, 1]): the step of size
    ``alpha`` moves the ``ceil(alpha)`` pixels of largest gradient (L1 over the channels) by the gradient's sign,
    the steepest ascent in that set (as the sparse steps of JSMA, Papernot et al. 2016).
    """

    name = "l0"

    def __init__(self, changed: float = 1e-6) -> None:
        self.changed = changed

    def moved(self, pixels: torch.Tensor) -> torch.Tensor:
        """Which pixels of an ``n x channels x pixels`` view have changed."""
        return pixels.abs().amax(dim=1) > self.changed

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return self.moved(pixel_view(delta)).sum(dim=1).to(delta.dtype)

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        pixels = pixel_view(grad)
        weight = pixels.abs().sum(dim=1)
        k = min(max(math.ceil(alpha), 0), weight.shape[1])
        chosen = torch.zeros_like(weight, dtype=torch.bool).scatter_(1, weight.topk(k, dim=1).indices, True)
        return (pixels.sign() * (chosen & (weight > 0))[:, None]).reshape(grad.shape)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        return self.project_each(delta, torch.full((len(delta),), float(eps), device=delta.device))

    def project_each(self, delta: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        pixels = pixel_view(delta)
        moved = self.moved(pixels)
        energy = pixels.pow(2).sum(dim=1).masked_fill(~moved, -1.0)  # an unchanged pixel takes no slot
        count = energy.shape[1]
        k = eps.detach().to(torch.float64).floor().clamp(0, count).long()
        slots = torch.arange(count, device=delta.device)[None, :] < k[:, None]
        order = energy.argsort(dim=1, descending=True, stable=True)
        keep = torch.zeros_like(slots).scatter_(1, order, slots) & moved
        return (pixels * keep[:, None]).reshape(delta.shape)

    def random_in_ball(self, like, eps, source):
        # floor(eps) distinct pixels (those of the smallest keys), each channel uniform in [-1, 1].
        pixels = pixel_view(like)
        channels, count = pixels.shape[1:]
        u = as_uniform(source, like)(count * (channels + 1))
        k = min(max(math.floor(eps), 0), count)
        chosen = torch.zeros(len(like), count, dtype=torch.bool, device=like.device)
        chosen.scatter_(1, u[:, :count].topk(k, dim=1, largest=False).indices, True)
        values = (u[:, count:] * 2 - 1).view(len(like), channels, count)
        return (values * chosen[:, None]).reshape(like.shape).to(like.dtype)


NORMS: dict[str, Norm] = {"linf": Linf(), "l2": L2(), "l1": L1(), "l0": L0()}


def get_norm(name: str | Norm) -> Norm:
    """The norm called ``name`` (``linf``, ``l2``, ``l1`` or ``l0``)."""
    if isinstance(name, Norm):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    key = {"inf": "linf", "l_inf": "linf", "2": "l2", "1": "l1", "0": "l0"}.get(key, key)
    if key not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of {sorted(NORMS)}")
    return NORMS[key]
