"""Sign-OPT (Cheng, Singh, Chen, Chen, Liu and Hsieh 2020, "Sign-OPT: a query-efficient hard-label adversarial
attack"), under L2.

The attack minimises ``g(theta)``, the distance from the clean point ``x0`` to the decision boundary along the
direction ``theta``, over directions. The sign of a directional derivative of ``g`` costs one label: with
``g(theta)`` known, ``x0 + g(theta) (theta + beta u) / ||theta + beta u||`` is adversarial exactly when
``g(theta + beta u) <= g(theta)``. Each iteration:

1. the sign estimate ``sum_k -sign_k u_k / K`` of the gradient of ``g`` from ``K`` random unit vectors ``u_k``,
   with ``sign_k = -1`` where the probe is adversarial (``g`` falls along ``u_k``), ``+1`` elsewhere;
2. a step ``theta - alpha * estimate``; one label at the current distance tells whether ``g`` fell along the new
   direction, and then a binary search finds the new ``g``. The step size doubles after a step that lowers
   ``g`` and falls to a quarter after one that does not (the paper's line search, one trial per iteration);
   below ``1e-4`` it goes back to its first value and ``beta`` shrinks tenfold. A sample is done when
   ``beta`` falls below ``1e-8`` or its queries are spent.

The starting direction is that of :class:`~alva.attacks.decision.DecisionAttack`'s starting point, after its
binary search.
"""

from __future__ import annotations

import torch

from alva.attacks.decision import DecisionAttack, DecisionRows
from alva.attacks.engine import Run
from alva.attacks.errors import finite, positive_int
from alva.attacks.norms import per_sample

__all__ = ["SignOPT", "SignOPTRows"]

_BLOCK = 32  # random directions drawn and evaluated at once
_SMALLEST_ALPHA, _SMALLEST_BETA = 1e-4, 1e-8
_TRIALS = 8  # the most labels of a line search


class SignOPTRows(DecisionRows):
    """A Sign-OPT search's rows: the step size ``alpha`` and probe size ``beta`` of each sample."""

    alpha: torch.Tensor
    beta: torch.Tensor


class SignOPT(DecisionAttack):
    """Sign-OPT: a decision-based minimum-norm attack by signs of directional derivatives of the distance to
    the boundary along a direction (L2).

    Args:
        model: a classifier on images in ``bounds`` (the attack sees only its labels).
        max_queries: the most labels read per sample, the clean one included.
        norm: ``"l2"`` (the only norm of this attack).
        directions: ``K``, the random directions of a sign estimate (the paper's 200).
        alpha: the first step size on the direction (the paper's 0.2).
        beta: the first probe size (the paper's 0.001).
        tolerance: the precision of the binary searches for ``g``, relative to the distance.
        **kwargs: ``eps``, ``init_attempts``, ``early_stop``, ``target``, ``bounds``, ``seed`` of
            :class:`~alva.attacks.decision.DecisionAttack`.
    """

    norms = ("l2",)
    rows_type = SignOPTRows

    def __init__(self, model: torch.nn.Module, max_queries: int = 1000, *, norm: str = "l2", directions: int = 200,
                 alpha: float = 0.2, beta: float = 0.001, tolerance: float = 1e-3, **kwargs) -> None:
        super().__init__(model, max_queries, norm=norm, **kwargs)
        self.directions = positive_int("directions", directions)
        self.alpha = finite("alpha", alpha, strict=True)
        self.beta = finite("beta", beta, strict=True)
        self.precision = finite("tolerance", tolerance, strict=True)

    def tolerance(self, x0: torch.Tensor) -> float:
        return self.precision

    def along(self, rows: SignOPTRows, direction: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """``x0 + distance * direction / ||direction||`` (n x d directions), clipped to the bounds."""
        unit = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return (rows.x0.reshape(rows.n, 1, -1) + distance[:, None, None] * unit.view(rows.n, -1, unit.shape[-1])
                ).clamp(*self.bounds)

    def sign_estimate(self, run: Run, rows: SignOPTRows, step: int, counts: torch.Tensor) -> torch.Tensor:
        """The sign estimate of the gradient of ``g`` at the rows' directions (n x d)."""
        theta = (rows.x - rows.x0).reshape(rows.n, -1)
        theta = theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-12)
        estimate = torch.zeros_like(theta)
        for block, first in enumerate(range(0, int(counts.max()), _BLOCK)):
            k = min(_BLOCK, int(counts.max()) - first)
            valid = first + torch.arange(k, device=theta.device)[None, :] < counts[:, None]
            u = self.normal(run, rows, (1, step, block), k)
            u = u / u.norm(dim=2, keepdim=True).clamp_min(1e-12)
            probes = self.along(rows, theta[:, None] + rows.beta[:, None, None] * u, rows.dist)
            adversarial, _ = self.decide(run, rows, probes.view(rows.n, k, *rows.x0.shape[1:]), valid)
            sign = torch.where(adversarial, -1.0, 1.0).to(u.dtype) * valid
            estimate += (sign[..., None] * u).sum(dim=1)
        return estimate / counts.clamp_min(1)[:, None]

    def line_search(self, run: Run, rows: SignOPTRows, theta: torch.Tensor, estimate: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step along ``-estimate``: one label per trial at the current distance. From ``alpha``, the step
        doubles while the point stays adversarial (``g`` did not grow); where the first trial is not, it falls
        to a quarter until one is. Returns the point of the largest adversarial step per row, and where there
        is one; ``rows.alpha`` becomes that step."""
        best = rows.x.clone()
        found = torch.zeros(rows.n, dtype=torch.bool, device=best.device)
        growing = torch.ones_like(found)
        searching = torch.ones_like(found)
        alpha = rows.alpha.clone()
        for _ in range(_TRIALS):
            active = searching & (self.left(run, rows) >= 1)
            if not active.any():
                break
            trial = self.along(rows, theta - alpha[:, None] * estimate, rows.dist)[:, 0].view_as(rows.x0)
            adversarial, _ = self.decide_one(run, rows, trial, active)
            new = active & adversarial
            best = torch.where(per_sample(new, best), trial, best)
            rows.alpha = torch.where(new, alpha, rows.alpha)
            growing &= ~(active & ~adversarial & ~found)  # a first failure: shrink from now on
            searching &= ~(active & ~adversarial & found) & ~(new & ~growing)
            found |= new
            alpha = torch.where(active, torch.where(growing, alpha * 2, alpha / 4), alpha)
        rows.alpha = torch.where(found, rows.alpha, alpha)
        return best, found

    def iterate(self, run: Run, rows: SignOPTRows) -> None:  # type: ignore[override]
        rows.alpha = torch.full_like(rows.dist, self.alpha)
        rows.beta = torch.full_like(rows.dist, self.beta)
        reserve = 1 + self.binary_steps(self.precision)
        step = 0
        while rows.n > 0:
            counts = (self.left(run, rows) - reserve).clamp(0, self.directions)
            if (counts < 1).any():  # too few queries left for an estimate, a trial and a binary search
                rows.keep(counts >= 1)
                counts = counts[counts >= 1]
                if rows.n == 0:
                    return
            estimate = self.sign_estimate(run, rows, step, counts)
            theta = (rows.x - rows.x0).reshape(rows.n, -1)
            theta = theta / theta.norm(dim=1, keepdim=True).clamp_min(1e-12)
            trial, better = self.line_search(run, rows, theta, estimate)
            boundary, label = self.binary_search(run, rows, trial, better, self.precision)
            improved = better & (self.distance(boundary, rows.x0) < rows.dist)
            rows.x = torch.where(per_sample(improved, boundary), boundary, rows.x)
            rows.label = torch.where(improved & (label >= 0), label, rows.label)
            reset = rows.alpha < _SMALLEST_ALPHA
            rows.alpha = torch.where(reset, torch.full_like(rows.alpha, self.alpha), rows.alpha)
            rows.beta = torch.where(reset, rows.beta / 10, rows.beta)
            self.offer_current(run, rows)
            run.count_steps(rows)
            step += 1
            converged = rows.beta < _SMALLEST_BETA
            if converged.any():
                rows.keep(~converged)
            if rows.n:
                self.settle(run, rows)
