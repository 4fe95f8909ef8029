"""Decoupled Direction and Norm (Rony et al. 2019, "Decoupling Direction and Norm for Efficient Gradient-Based L2
Adversarial Attacks and Defenses"): an L2 minimum-norm attack that takes a gradient step on the loss for the
direction and sets the norm separately.

Per sample, from ``delta = 0`` and a radius ``epsilon = init_epsilon``, each step:

1. the gradient of the loss at ``x + delta`` (cross-entropy by default), scaled to L2 norm 1;
2. ``delta <- delta + alpha_k * g``, with ``alpha_k`` falling from 1 to 0.01 on a cosine schedule;
3. ``epsilon <- (1 - gamma) * epsilon`` if ``x + delta`` was adversarial before the step, else
   ``(1 + gamma) * epsilon``, capped at the largest L2 distance inside the bounds;
4. ``delta`` rescaled to norm ``epsilon`` and clipped so that ``x + delta`` lies in the bounds.

Every iterate is offered to the engine, which keeps each sample's closest adversarial point
(:class:`~alva.attacks.minimum_norm.MinimumNormResult`). Random numbers are drawn only where a gradient is
exactly zero (a random direction replaces it), keyed per sample, so a seeded call repeats exactly.
"""

from __future__ import annotations

import math
from typing import cast

import torch

from alva.attacks.engine import Rows, Run
from alva.attacks.errors import finite, in_interval, positive_int
from alva.attacks.minimum_norm_gradient import MinimumNormGradientAttack
from alva.attacks.norms import get_norm, per_sample

__all__ = ["DDN", "DDNRows"]

FINAL_STEP_SIZE = 0.01  # the step size at the end of the cosine schedule (from 1)


class DDNRows(Rows):
    """The per-row state of a DDN search: the radius and whether the current iterate is adversarial."""

    radius: torch.Tensor
    adversarial: torch.Tensor
    largest: torch.Tensor


class DDN(MinimumNormGradientAttack):
    """Decoupled Direction and Norm: a normalised gradient step for the direction, a radius that shrinks by
    ``gamma`` after an adversarial iterate and grows by ``gamma`` otherwise.

    Args:
        model: a classifier returning logits for images in ``bounds``.
        steps: iterations (the paper uses 100 to 1000).
        init_epsilon: the first radius.
        gamma: the relative change of the radius per step, in (0, 1).
        **kwargs: ``loss`` (default ``"ce"``), ``target``, ``bounds``, ``seed`` of every
            :class:`~alva.attacks.base.Attack`.
    """

    rows_type = DDNRows

    def __init__(self, model: torch.nn.Module, steps: int = 100, init_epsilon: float = 1.0, gamma: float = 0.05,
                 **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.norm = get_norm("l2")
        self.steps = positive_int("steps", steps)
        self.init_epsilon = finite("init_epsilon", init_epsilon, strict=True)
        self.gamma = in_interval("gamma", gamma, "(0, 1)")

    def step_size(self, k: int) -> float:
        """The step size of step ``k``: cosine annealing from 1 to :data:`FINAL_STEP_SIZE`."""
        return FINAL_STEP_SIZE + (1 - FINAL_STEP_SIZE) * (1 + math.cos(math.pi * k / self.steps)) / 2

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        rows = cast(DDNRows, rows)
        lo, hi = self.bounds
        rows.radius = torch.full((rows.n,), self.init_epsilon, device=rows.x0.device)
        rows.largest = self.norm.measure(torch.maximum(rows.x0 - lo, hi - rows.x0))
        return rows.x0

    def checked(self, run: Run, rows: Rows, k: int, logits: torch.Tensor, success: torch.Tensor) -> None:
        rows = cast(DDNRows, rows)
        rows.adversarial = success
        if k == self.steps:
            return
        flat = self.norm.measure(rows.grad) == 0
        if flat.any():  # no direction from the loss: a random one, keyed per sample
            index = flat.nonzero().squeeze(1)
            at = index if rows.rows is None else rows.rows[index]
            source = run.random.stream(at, (*rows.stream, k))
            rows.grad[index] = self.norm.random_in_ball(rows.grad[index], 1.0, source)

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        rows = cast(DDNRows, rows)
        lo, hi = self.bounds
        delta = rows.x - rows.x0 + self.norm.ascent_step(grad, self.step_size(k))
        change = torch.where(rows.adversarial, 1 - self.gamma, 1 + self.gamma)
        rows.radius = torch.minimum(rows.radius * change, rows.largest)
        scale = rows.radius / self.norm.measure(delta).clamp_min(1e-12)
        return (rows.x0 + delta * per_sample(scale, delta)).clamp_(lo, hi)
