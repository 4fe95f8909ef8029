"""Gradient ascent on a gradient estimated from the model's scores alone: the common part of SPSA
(:mod:`alva.attacks.spsa`) and NES (:mod:`alva.attacks.nes`).

Each step spends one query at the iterate (its loss and the success check) and, for a sample not yet
successful, ``2 * samples`` queries on a symmetric finite-difference estimate of the gradient of the loss:

    g = 1 / samples * sum_i (L(x + delta * u_i) - L(x - delta * u_i)) / (2 * delta) * u_i

with random directions ``u_i`` (Rademacher signs for SPSA, Spall 1992 and Uesato et al. 2018; standard normals
for NES, Wierstra et al. 2014 and Ilyas et al. 2018). The queried points are clipped to the bounds, so the
model only ever sees valid inputs. The directions are keyed random numbers of the sample, so a sample's search
does not depend on its batch.

Budget: a sample gets at most ``n_queries`` model evaluations, the clean one included: ``steps`` is the
largest number of steps such that ``1 + steps * (2 * samples + 1) + 1 <= n_queries`` (the last query checks
the final iterate). With early stop a sample is never queried after the query that broke it, so the number of
queries a sample had spent when it succeeded tells at once whether it succeeds under any smaller budget.
"""

from __future__ import annotations

import math

import torch

from alva.attacks.engine import GradientAttack, Rows, Run
from alva.attacks.errors import finite, positive_int
from alva.attacks.keyed import Uniform, generator_uniform
from alva.attacks.norms import Norm, get_norm

__all__ = ["ScoreGradientAttack", "gaussian", "rademacher"]

_GROUP = 8  # directions drawn per stream of keyed numbers (fixed, so that the numbers never depend on the batch)
_BITS = 24  # random bits of a keyed uniform number


def rademacher(uniform: Uniform, m: int) -> torch.Tensor:
    """``m`` random signs (+1 or -1, each with probability 1/2) per row, 24 from each keyed uniform number (its
    24 random bits), so that the hashing costs a 24th of one number per sign."""
    words = (uniform(-(-m // _BITS)) * 2.0**_BITS).to(torch.int64)
    bits = (words[:, :, None] >> torch.arange(_BITS, device=words.device)) & 1
    return bits.reshape(len(words), -1)[:, :m].to(torch.float32).mul_(2).sub_(1)


def gaussian(uniform: Uniform, m: int) -> torch.Tensor:
    """``m`` standard normal numbers per row (the inverse of the normal distribution function of keyed uniform
    numbers; the half-step offset keeps them finite)."""
    return torch.special.ndtri(uniform(m) + 2.0**-25)


class ScoreGradientAttack(GradientAttack):
    """Ascent on the loss along an estimate of its gradient from ``2 * samples`` queries per step.

    Subclasses give :attr:`directions` (``(uniform, m) -> n x m`` random coordinates of the directions) and
    :meth:`update` (the next iterate from the estimate, inside the eps ball and the bounds).

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        n_queries: the per-sample budget of model evaluations, the clean one included.
        samples: pairs of symmetric queries per step (the estimate spends ``2 * samples``).
        delta: the finite-difference step (the size of each query's perturbation along a direction).
        norm: ``"linf"`` or ``"l2"``.
        max_rows: the most queried points evaluated in one forward pass (larger batches are slower per image
            on a CPU).
    """

    directions = staticmethod(rademacher)

    def __init__(self, model: torch.nn.Module, eps: float, n_queries: int, *, samples: int, delta: float,
                 norm: str | Norm = "linf", max_rows: int = 1024, loss="margin", early_stop: bool = True,
                 **kwargs) -> None:
        super().__init__(model, loss=loss, early_stop=early_stop, **kwargs)
        self.eps = finite("eps", eps)
        self.n_queries = positive_int("n_queries", n_queries)
        self.samples = positive_int("samples", samples)
        self.delta = finite("delta", delta, strict=True)
        self.norm = get_norm(norm)
        self.max_rows = positive_int("max_rows", max_rows)
        self.steps = max(self.n_queries - 2, 0) // (2 * self.samples + 1)

    @property
    def queries_per_step(self) -> int:
        """The query at the iterate; the estimate's ``2 * samples`` are counted by :meth:`step` for the samples
        still attacked, so that a sample that succeeds at the iterate spends none on it."""
        return 1

    def search(self, run: Run, index: torch.Tensor | None, restart: int, loss_target: torch.Tensor | None = None,
               stream: int = 0) -> None:
        if self.n_queries >= 2:
            super().search(run, index, restart, loss_target, stream)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        rows.run = run  # type: ignore[attr-defined]  # the estimate counts its queries on the run
        return rows.x0

    def gradient(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits and loss at the iterate (one query); the estimate is made by :meth:`step`, only for the
        samples that this query leaves unbroken."""
        with torch.no_grad():
            logits = self.predict(rows.x, rows.y)
            return logits, self.loss(logits, rows.y, rows.loss_target), torch.zeros(())

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        run: Run | None = getattr(rows, "run", None)
        estimate = self.estimate(rows, k, run)
        if run is not None:
            run.count_queries(rows, 2 * self.samples)
        return self.update(rows, estimate, k)

    def update(self, rows: Rows, estimate: torch.Tensor, k: int) -> torch.Tensor:
        """The next iterate from ``rows.x`` and the estimated gradient (which it may overwrite)."""
        raise NotImplementedError

    def project(self, rows: Rows, x: torch.Tensor) -> torch.Tensor:
        """``x`` projected onto the eps ball around ``rows.x0`` and the bounds."""
        return (rows.x0 + self.norm.project(x - rows.x0, self.eps)).clamp_(*self.bounds)

    def uniform(self, rows: Rows, k: int, group: int, run: Run | None) -> Uniform:
        if run is None:  # outside a run (no keyed numbers): torch's global generator
            return generator_uniform(rows.n, None, rows.x.device, rows.x.dtype)
        return run.uniform(rows, (*rows.stream, k, group))

    def estimate(self, rows: Rows, k: int, run: Run | None) -> torch.Tensor:
        """The finite-difference estimate of the gradient of the loss at ``rows.x`` (``2 * samples`` queries)."""
        x, n, shape = rows.x, rows.n, rows.x.shape[1:]
        total = torch.zeros_like(x)
        for group in range(math.ceil(self.samples / _GROUP)):
            size = min(_GROUP, self.samples - group * _GROUP)
            u = self.directions(self.uniform(rows, k, group, run), size * x[0].numel()).to(x.dtype)
            u = u.view(n, size, *shape)
            scores = self.scores(rows, torch.cat([x[:, None] + self.delta * u, x[:, None] - self.delta * u], 1))
            difference = (scores[:, :size] - scores[:, size:]) / (2 * self.delta)
            total += (difference.view(n, size, *[1] * len(shape)) * u).sum(dim=1)
        return total / self.samples

    def scores(self, rows: Rows, points: torch.Tensor) -> torch.Tensor:
        """The loss at ``points`` (n x m x ...: m points per row), clipped to the bounds, as n x m."""
        n, m = points.shape[:2]
        flat = points.reshape(n * m, *points.shape[2:]).clamp_(*self.bounds)
        y = rows.y.repeat_interleave(m)
        target = None if rows.loss_target is None else rows.loss_target.repeat_interleave(m)
        out = []
        for lo in range(0, n * m, self.max_rows):
            part = slice(lo, lo + self.max_rows)
            logits = self.predict(flat[part], y[part])
            out.append(self.loss(logits, y[part], None if target is None else target[part]))
        return torch.cat(out).view(n, m)
