"""Threat models as small classes: how to measure, step inside, project onto and sample from an eps ball.

Each attack is written once against this interface (after foolbox 3's gradient-descent template).
"""

from __future__ import annotations

import torch


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(len(t), -1)


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector so that it broadcasts over ``like``."""
    return v.view(-1, *([1] * (like.ndim - 1)))


class Norm:
    """An L_p threat model."""

    name: str = ""

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``delta``."""
        raise NotImplementedError

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        """The steepest-ascent step of size ``alpha`` under this norm."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        """The closest point of the eps ball to ``delta``."""
        raise NotImplementedError

    def ascend(self, x: torch.Tensor, grad: torch.Tensor, center: torch.Tensor, alpha: float, eps: float
               ) -> torch.Tensor:
        """``x`` plus the ascent step of size ``alpha`` along ``grad``, projected onto the eps ball around
        ``center``: one PGD step before the pixel bounds.

        May overwrite ``grad`` (give it a gradient not needed afterwards); never ``x`` or ``center``.
        """
        return center + self.project(x + self.ascent_step(grad, alpha) - center, eps)

    def random_in_ball(self, like: torch.Tensor, eps: float, generator: torch.Generator | None
                       ) -> torch.Tensor:
        """A sample uniformly distributed in the eps ball, one per sample of ``like``."""
        raise NotImplementedError

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

    def random_in_ball(self, like: torch.Tensor, eps: float, generator: torch.Generator | None
                       ) -> torch.Tensor:
        u = torch.rand(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        return u.mul_(2 * eps).sub_(eps)


class L2(Norm):
    name = "l2"

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return _flat(delta).norm(dim=1)

    def ascent_step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        norms = self.measure(grad).clamp_min(1e-12)
        return grad * _per_sample(alpha / norms, grad)

    def project(self, delta: torch.Tensor, eps: float) -> torch.Tensor:
        norms = self.measure(delta)
        factor = torch.where(norms > eps, eps / norms.clamp_min(1e-12), torch.ones_like(norms))
        return delta * _per_sample(factor, delta)

    def random_in_ball(self, like: torch.Tensor, eps: float, generator: torch.Generator | None
                       ) -> torch.Tensor:
        # Uniform in the ball: a uniform direction, and a radius with density proportional to r^(d-1).
        direction = torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
        direction = direction / _per_sample(self.measure(direction).clamp_min(1e-12), like)
        dim = _flat(like).shape[1]
        u = torch.rand(len(like), generator=generator, device=like.device, dtype=like.dtype)
        return direction * _per_sample(eps * u.pow(1.0 / dim), like)


NORMS: dict[str, Norm] = {"linf": Linf(), "l2": L2()}


def get_norm(name: str | Norm) -> Norm:
    """The norm called ``name`` (``linf`` or ``l2``)."""
    if isinstance(name, Norm):
        return name
    key = str(name).lower().replace("-", "").replace("_", "")
    key = {"inf": "linf", "l_inf": "linf", "2": "l2"}.get(key, key)
    if key not in NORMS:
        raise ValueError(f"unknown norm {name!r}; choose one of {sorted(NORMS)}")
    return NORMS[key]
