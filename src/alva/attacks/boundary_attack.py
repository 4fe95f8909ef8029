"""The Boundary Attack (Brendel, Rauber and Bethge 2018, "Decision-based adversarial attacks: reliable attacks
against black-box machine learning models"), under L2.

From an adversarial point ``x`` at distance ``r`` from the clean point ``x0`` (the start and binary search of
:class:`~alva.attacks.decision.DecisionAttack`), each step proposes:

1. an orthogonal step: a normal random vector, made orthogonal to ``x - x0`` and scaled to ``s r``, added to
   ``x - x0`` and projected back onto the sphere of radius ``r`` around ``x0`` (the spherical candidate);
2. a step towards the source: the spherical candidate moved along its ray to ``x0`` to the distance
   ``(1 - e) r``.

The candidate (clipped to the bounds) replaces ``x`` where it is adversarial. The step sizes adapt per sample
(the paper's rule, with foolbox 3's windows): every ``stats_every`` steps the spherical candidate is queried
too; where the spherical candidates of the last 100 such checks were adversarial more than half the time,
``s`` and ``e`` grow by ``step_adaptation``, under 20% they shrink; where the candidates of the last 30 steps
succeeded more than 25% of the time ``e`` grows, under 10% it shrinks. A sample is done when ``e`` falls
below ``convergence`` or its queries are spent.
"""

from __future__ import annotations

import torch

from alva.attacks.decision import DecisionAttack, DecisionRows
from alva.attacks.engine import Run
from alva.attacks.errors import finite, in_interval, positive_int
from alva.attacks.norms import per_sample

__all__ = ["BoundaryAttack", "BoundaryRows"]

_SPHERICAL_WINDOW, _STEP_WINDOW = 100, 30


class BoundaryRows(DecisionRows):
    """A Boundary Attack search's rows: the two step sizes and the windows of recent outcomes (NaN: empty)."""

    spherical: torch.Tensor
    source: torch.Tensor
    spherical_stats: torch.Tensor
    step_stats: torch.Tensor


def _push(window: torch.Tensor, outcome: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """The windows (n x length) with ``outcome`` appended (the oldest dropped) in the rows ``where``."""
    shifted = torch.cat([window[:, 1:], outcome.to(window.dtype)[:, None]], dim=1)
    return torch.where(where[:, None], shifted, window)


def _adapt(window: torch.Tensor, high: float, low: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a full window's success rate is above ``high`` and where it is below ``low``."""
    full = ~window[:, 0].isnan()
    rate = window.nan_to_num(0.0).mean(dim=1)
    return full & (rate > high), full & (rate < low)


class BoundaryAttack(DecisionAttack):
    """The Boundary Attack: a random walk along the decision boundary towards the clean point (L2).

    Args:
        model: a classifier on images in ``bounds`` (the attack sees only its labels).
        max_queries: the most labels read per sample, the clean one included.
        norm: ``"l2"`` (the only norm of this attack).
        spherical_step: the first relative size ``s`` of the orthogonal step.
        source_step: the first relative size ``e`` of the step towards the clean point.
        step_adaptation: the factor by which the step sizes grow or shrink.
        stats_every: query the spherical candidate (and adapt the step sizes) every this many steps.
        convergence: a sample is done when its source step falls below this.
        **kwargs: ``eps``, ``init_attempts``, ``early_stop``, ``target``, ``bounds``, ``seed`` of
            :class:`~alva.attacks.decision.DecisionAttack`.
    """

    norms = ("l2",)
    rows_type = BoundaryRows

    def __init__(self, model: torch.nn.Module, max_queries: int = 1000, *, norm: str = "l2",
                 spherical_step: float = 0.01, source_step: float = 0.01, step_adaptation: float = 1.5,
                 stats_every: int = 10, convergence: float = 1e-7, **kwargs) -> None:
        super().__init__(model, max_queries, norm=norm, **kwargs)
        self.spherical_step = finite("spherical_step", spherical_step, strict=True)
        self.source_step = in_interval("source_step", source_step, "(0, 1)")
        self.step_adaptation = finite("step_adaptation", step_adaptation, 1.0, strict=True)
        self.stats_every = positive_int("stats_every", stats_every)
        self.convergence = finite("convergence", convergence)

    def candidates(self, run: Run, rows: BoundaryRows, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The spherical candidate and the candidate after the source step, per row."""
        delta = (rows.x - rows.x0).reshape(rows.n, -1)
        radius = delta.norm(dim=1, keepdim=True).clamp_min(1e-12)
        unit = delta / radius
        eta = self.normal(run, rows, (1, k), 1)[:, 0]
        eta = eta - (eta * unit).sum(dim=1, keepdim=True) * unit
        eta = eta * (rows.spherical[:, None] * radius / eta.norm(dim=1, keepdim=True).clamp_min(1e-12))
        lo, hi = self.bounds
        spherical = (delta + eta) / torch.sqrt(1 + rows.spherical[:, None] ** 2)
        spherical = (rows.x0.reshape(rows.n, -1) + spherical).clamp(lo, hi) - rows.x0.reshape(rows.n, -1)
        length = spherical.norm(dim=1, keepdim=True).clamp_min(1e-12)
        toward = spherical * ((1 - rows.source[:, None]) * radius / length)
        candidate = (rows.x0.reshape(rows.n, -1) + toward).clamp(lo, hi)
        return (rows.x0.reshape(rows.n, -1) + spherical).view_as(rows.x0), candidate.view_as(rows.x0)

    def adapt(self, rows: BoundaryRows) -> None:
        up, down = _adapt(rows.spherical_stats, 0.5, 0.2)
        factor = torch.where(up, self.step_adaptation, torch.where(down, 1 / self.step_adaptation, 1.0))
        rows.spherical = rows.spherical * factor
        rows.source = (rows.source * factor).clamp(max=0.5)
        rows.spherical_stats[up | down] = float("nan")
        up, down = _adapt(rows.step_stats, 0.25, 0.1)
        factor = torch.where(up, self.step_adaptation, torch.where(down, 1 / self.step_adaptation, 1.0))
        rows.source = (rows.source * factor).clamp(max=0.5)
        rows.step_stats[up | down] = float("nan")

    def iterate(self, run: Run, rows: BoundaryRows) -> None:  # type: ignore[override]
        like = rows.dist
        rows.spherical = torch.full_like(like, self.spherical_step)
        rows.source = torch.full_like(like, self.source_step)
        rows.spherical_stats = torch.full((rows.n, _SPHERICAL_WINDOW), float("nan"), device=like.device)
        rows.step_stats = torch.full((rows.n, _STEP_WINDOW), float("nan"), device=like.device)
        k = 0
        while rows.n > 0:
            spherical, candidate = self.candidates(run, rows, k)
            check = k % self.stats_every == 0
            left = self.left(run, rows)
            if check:  # the spherical candidate too, where the budget allows
                valid = torch.stack([left >= 1, left >= 2], dim=1)
                adversarial, label = self.decide(run, rows, torch.stack([candidate, spherical], dim=1), valid)
            else:
                valid = torch.stack([left >= 1, torch.zeros_like(left, dtype=torch.bool)], dim=1)
                adversarial, label = self.decide(run, rows, candidate[:, None], valid[:, :1])
                adversarial = torch.cat([adversarial, valid[:, 1:]], dim=1)
            accept = adversarial[:, 0]
            rows.x = torch.where(per_sample(accept, rows.x), candidate, rows.x)
            rows.label = torch.where(accept, label[:, 0], rows.label)
            rows.step_stats = _push(rows.step_stats, accept, valid[:, 0])
            rows.spherical_stats = _push(rows.spherical_stats, adversarial[:, 1], valid[:, 1])
            if check:
                self.adapt(rows)
            if accept.any():
                self.offer_current(run, rows)
            run.count_steps(rows)
            k += 1
            converged = rows.source < self.convergence
            if converged.any():
                rows.keep(~converged)
            if rows.n:
                self.settle(run, rows)
