"""HopSkipJump (Chen, Jordan and Wainwright 2020, "HopSkipJumpAttack: a query-efficient decision-based attack"),
under L2 and L-inf, targeted or not.

From a point on the decision boundary (:class:`~alva.attacks.decision.DecisionAttack`'s start and binary
search), iteration ``t`` (from 1):

1. the direction of the boundary's normal, estimated from ``B_t = min(init_evals * sqrt(t), max_evals)`` labels
   at ``x_t + delta_t * u_b`` with random unit vectors ``u_b`` (normal under L2, uniform in the cube under
   L-inf): ``sum_b (phi_b - mean(phi)) u_b`` with ``phi_b = +1`` where adversarial, ``-1`` elsewhere (the mean
   alone where every ``phi_b`` agrees); the probe radius is ``delta_1 = 0.1 (high - low)``, then
   ``sqrt(d) theta dist`` (L2) or ``d theta dist`` (L-inf), with ``theta = gamma / d^(3/2)`` (L2) or
   ``gamma / d^2`` (L-inf);
2. a geometric step search: from ``xi = dist / sqrt(t)``, halved until ``x_t + xi v`` is adversarial, where
   ``v`` is the estimate scaled to unit L2 norm (L2) or its sign (L-inf);
3. a binary search between the clean point and that point, to precision ``theta``, gives ``x_{t+1}``.

The sample counts ``B_t`` shrink where the budget would not leave room for the step search and the binary
search; a sample is done when its queries are spent.
"""

from __future__ import annotations

import math

import torch

from alva.attacks.decision import DecisionAttack, DecisionRows
from alva.attacks.engine import Run
from alva.attacks.errors import finite, positive_int
from alva.attacks.norms import per_sample

__all__ = ["HopSkipJump"]

_BLOCK = 32  # random directions drawn and evaluated at once (a stream of keyed numbers each)
_HALVINGS = 25  # the most halvings of the geometric step search


class HopSkipJump(DecisionAttack):
    """HopSkipJump: a decision-based minimum-norm attack by gradient-direction estimation at the boundary.

    Args:
        model: a classifier on images in ``bounds`` (the attack sees only its labels).
        max_queries: the most labels read per sample, the clean one included.
        norm: ``"l2"`` or ``"linf"``.
        init_evals: the sample count of the first gradient estimate (the paper's 100).
        max_evals: the largest sample count of an estimate (the paper's 10,000).
        gamma: sets the binary search's precision ``theta`` and the probe radius (the paper's 1).
        steps: the most iterations (None: until the budget is spent).
        **kwargs: ``eps``, ``init_attempts``, ``early_stop``, ``target``, ``bounds``, ``seed`` of
            :class:`~alva.attacks.decision.DecisionAttack`.
    """

    def __init__(self, model: torch.nn.Module, max_queries: int = 1000, *, norm: str = "l2", init_evals: int = 100,
                 max_evals: int = 10000, gamma: float = 1.0, steps: int | None = None, **kwargs) -> None:
        super().__init__(model, max_queries, norm=norm, **kwargs)
        self.init_evals = positive_int("init_evals", init_evals)
        self.max_evals = positive_int("max_evals", max_evals)
        self.gamma = finite("gamma", gamma, strict=True)
        self.steps = None if steps is None else positive_int("steps", steps)

    def theta(self, x0: torch.Tensor) -> float:
        d = x0[0].numel()
        return self.gamma / (d ** 1.5 if self.norm.name == "l2" else d ** 2)

    def tolerance(self, x0: torch.Tensor) -> float:
        return self.theta(x0)

    def probe_radius(self, rows: DecisionRows, t: int) -> torch.Tensor:
        if t == 1:
            return torch.full_like(rows.dist, 0.1 * (self.bounds[1] - self.bounds[0]))
        d = rows.x0[0].numel()
        return (math.sqrt(d) if self.norm.name == "l2" else d) * self.theta(rows.x0) * rows.dist

    def directions(self, run: Run, rows: DecisionRows, stream: tuple[int, ...], k: int) -> torch.Tensor:
        """n x k x d random unit vectors: normal (L2) or uniform in the cube (L-inf), scaled to unit L2 norm."""
        if self.norm.name == "l2":
            u = self.normal(run, rows, stream, k)
        else:
            d = rows.x0[0].numel()
            u = self.uniform_pairs(run, rows, stream, k * d).view(rows.n, k, d) * 2 - 1
        return u / u.norm(dim=2, keepdim=True).clamp_min(1e-12)

    def estimate(self, run: Run, rows: DecisionRows, t: int, counts: torch.Tensor) -> torch.Tensor:
        """The estimate of the boundary's normal at ``rows.x`` (n x d) from ``counts[i]`` labels per row."""
        x = rows.x.reshape(rows.n, -1)
        radius = self.probe_radius(rows, t)[:, None, None]
        lo, hi = self.bounds
        weighted, total, votes = torch.zeros_like(x), torch.zeros_like(x), torch.zeros_like(rows.dist)
        for block, first in enumerate(range(0, int(counts.max()), _BLOCK)):
            k = min(_BLOCK, int(counts.max()) - first)
            valid = first + torch.arange(k, device=x.device)[None, :] < counts[:, None]
            probes = (x[:, None] + radius * self.directions(run, rows, (1, t, block), k)).clamp(lo, hi)
            adversarial, _ = self.decide(run, rows, probes.view(rows.n, k, *rows.x0.shape[1:]), valid)
            moved = (probes - x[:, None]) / radius * valid[..., None]  # the directions after clipping
            phi = torch.where(adversarial, 1.0, -1.0).to(x.dtype) * valid
            weighted += (phi[..., None] * moved).sum(dim=1)
            total += moved.sum(dim=1)
            votes += phi.sum(dim=1)
        mean = votes / counts.clamp_min(1)
        grad = weighted - mean[:, None] * total
        grad = torch.where((mean.abs() == 1)[:, None], mean[:, None] * total, grad)
        return grad.view_as(rows.x0)

    def update_direction(self, grad: torch.Tensor) -> torch.Tensor:
        if self.norm.name == "linf":
            return grad.sign()
        return grad / per_sample(grad.reshape(len(grad), -1).norm(dim=1).clamp_min(1e-12), grad)

    def step_search(self, run: Run, rows: DecisionRows, direction: torch.Tensor, t: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The geometric step search: the first adversarial ``x + xi v`` with ``xi`` halved from
        ``dist / sqrt(t)``; returns the points and where one was found."""
        size = rows.dist / math.sqrt(t)
        found = torch.zeros(rows.n, dtype=torch.bool, device=size.device)
        point = rows.x.clone()
        for _ in range(_HALVINGS):
            active = ~found & (self.left(run, rows) >= 1)
            if not active.any():
                break
            candidate = (rows.x + per_sample(size, rows.x) * direction).clamp(*self.bounds)
            adversarial, _ = self.decide_one(run, rows, candidate, active)
            new = active & adversarial
            point = torch.where(per_sample(new, point), candidate, point)
            found |= new
            size = torch.where(new, size, size / 2)
        return point, found

    def iterate(self, run: Run, rows: DecisionRows) -> None:
        reserve = 1 + self.binary_steps(self.tolerance(rows.x0))
        t = 0
        while rows.n > 0 and (self.steps is None or t < self.steps):
            t += 1
            samples = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            counts = (self.left(run, rows) - reserve).clamp(0, samples)
            if (counts < 1).any():  # too few queries left for an estimate, a step and a binary search
                rows.keep(counts >= 1)
                counts = counts[counts >= 1]
                if rows.n == 0:
                    return
            direction = self.update_direction(self.estimate(run, rows, t, counts))
            point, found = self.step_search(run, rows, direction, t)
            boundary, label = self.binary_search(run, rows, point, found, self.tolerance(rows.x0))
            rows.x = torch.where(per_sample(found, boundary), boundary, rows.x)
            rows.label = torch.where(found & (label >= 0), label, rows.label)
            self.offer_current(run, rows)
            run.count_steps(rows)
            self.settle(run, rows)
