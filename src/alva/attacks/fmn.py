"""Fast Minimum-Norm attack (Pintor, Roli, Brendel and Biggio 2021, "Fast Minimum-norm Adversarial Attacks
through Adaptive Norm Constraints") under L0, L1, L2 and L-inf.

Each step moves the perturbation along the L2-normalised gradient of the logit margin by ``alpha`` (cosine
annealing from ``alpha_init`` to ``alpha_final``), then projects it onto the ball of radius ``eps`` of the norm
and the pixel bounds. The radius adapts per sample: it shrinks by the factor ``1 - gamma`` (never above the
smallest adversarial norm found) while the iterate is adversarial, grows by ``1 + gamma`` when it is not and,
before any success, also jumps to the linear estimate of the boundary, the current norm plus
``|margin| / ||grad||_dual``; ``gamma`` decays by cosine annealing from ``gamma_init`` to ``gamma_final``. Under L0
the radius is a number of pixels and moves by at least one pixel per step.

Three departures from the paper, each measured stronger on the shipped MNIST models: before the first success
the radius grows by ``1 + gamma`` beyond the boundary estimate as well (the estimate alone approaches the boundary
from inside and, under L2, often never crosses it); under L-inf the step follows the sign of the gradient (its
steepest-ascent direction, scaled to L2 length ``alpha``), which crosses the thresholding that adversarial training
teaches a network where the raw gradient stalls; under L0 the radius starts at every pixel rather than at one,
so the first steps are unconstrained.
"""

from __future__ import annotations

import math
from typing import cast

import torch

from alva.attacks.engine import Rows, Run
from alva.attacks.errors import AttackInputError, finite, in_interval, positive_int
from alva.attacks.minimum_norm_gradient import MinimumNormGradientAttack
from alva.attacks.norms import Norm, get_norm, per_sample

__all__ = ["FMN", "FMN_NORMS", "FMNRows", "cosine_annealing"]

FMN_NORMS = ("l0", "l1", "l2", "linf")
DUAL_ORDER = {"l1": math.inf, "l2": 2.0, "linf": 1.0}
"""The order of the dual norm of each norm (the one that measures a gradient)."""


def cosine_annealing(start: float, end: float, k: int, steps: int) -> float:
    """The value at step ``k`` of ``steps`` of a cosine schedule from ``start`` down to ``end``."""
    return end + (start - end) * (1 + math.cos(math.pi * k / steps)) / 2


class FMNRows(Rows):
    """The per-row state of an FMN search.

    eps: the radius of the ball the perturbation is projected onto; best: the smallest adversarial norm so far
    (the largest norm in the box before any success); widest: the norm of the farthest point of the box;
    found: a success so far; adversarial: the current iterate succeeds; margin: its loss.
    """

    eps: torch.Tensor
    best: torch.Tensor
    widest: torch.Tensor
    found: torch.Tensor
    adversarial: torch.Tensor
    margin: torch.Tensor


class FMN(MinimumNormGradientAttack):
    """Fast Minimum-Norm attack: the smallest adversarial perturbation of each sample under ``norm``.

    Args:
        model: a classifier returning logits for images in ``bounds``.
        norm: ``"l0"`` (pixels), ``"l1"``, ``"l2"`` or ``"linf"``.
        steps: gradient steps (>= 1); each costs one forward and one backward pass, plus one forward pass
            for the final iterate.
        alpha_init: the first step length (L2 length of the step, > 0).
        alpha_final: the last step length; default ``alpha_init / 100``.
        gamma_init: the first factor by which the radius changes, in (0, 1).
        gamma_final: the last one, in [0, gamma_init].
        **kwargs: ``loss`` (default ``"margin"``, the logit difference of the paper), ``target``, ``bounds``
            and ``seed`` of every :class:`~alva.attacks.base.Attack`.

    The result is a :class:`~alva.attacks.minimum_norm.MinimumNormResult`: each sample's closest successful
    iterate and its distance under ``norm``. Samples misclassified before the attack are not searched.
    """

    rows_type = FMNRows

    def __init__(self, model: torch.nn.Module, norm: str | Norm = "l2", steps: int = 100, alpha_init: float = 1.0,
                 alpha_final: float | None = None, gamma_init: float = 0.05, gamma_final: float = 0.001,
                 **kwargs) -> None:
        kwargs.setdefault("loss", "margin")
        super().__init__(model, **kwargs)
        self.norm = get_norm(norm)
        if self.norm.name not in FMN_NORMS:
            raise AttackInputError(f"FMN works under {FMN_NORMS}, got the norm {self.norm.name!r}")
        self.steps = positive_int("steps", steps)
        self.alpha_init = finite("alpha_init", alpha_init, strict=True)
        self.alpha_final = self.alpha_init / 100 if alpha_final is None else finite("alpha_final", alpha_final)
        self.gamma_init = in_interval("gamma_init", gamma_init, "(0, 1)")
        self.gamma_final = finite("gamma_final", gamma_final)
        if self.gamma_final > self.gamma_init:
            raise AttackInputError(f"gamma_final must be at most gamma_init, got {gamma_final} > {gamma_init}")

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        state = cast(FMNRows, rows)
        lo, hi = self.bounds
        state.widest = self.norm.measure(torch.maximum(rows.x0 - lo, hi - rows.x0))
        state.best = state.widest.clone()
        state.eps = state.widest.clone() if self.norm.name == "l0" else torch.zeros_like(state.widest)
        state.found = torch.zeros(rows.n, dtype=torch.bool, device=rows.x0.device)
        return rows.x0

    def checked(self, run: Run, rows: Rows, k: int, logits: torch.Tensor, success: torch.Tensor) -> None:
        state = cast(FMNRows, rows)
        distance = self.distance(rows.x, rows.x0)
        state.adversarial = success
        state.best = torch.where(success, torch.minimum(state.best, distance), state.best)
        state.found = state.found | success

    def observe(self, rows: Rows, k: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        cast(FMNRows, rows).margin = loss

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        state = cast(FMNRows, rows)
        delta = rows.x - rows.x0
        gamma = cosine_annealing(self.gamma_init, self.gamma_final, k, self.steps)
        state.eps = torch.minimum(self.next_eps(state, delta, grad, gamma), state.widest)
        alpha = cosine_annealing(self.alpha_init, self.alpha_final, k, self.steps)
        direction = grad.sign() if self.norm.name == "linf" else grad
        length = direction.reshape(rows.n, -1).norm(dim=1).clamp_min(1e-12)
        delta = delta + direction * per_sample(alpha / length, grad)
        delta = self.norm.project_each(delta, state.eps)
        return (rows.x0 + delta).clamp_(*self.bounds)

    def next_eps(self, state: FMNRows, delta: torch.Tensor, grad: torch.Tensor, gamma: float) -> torch.Tensor:
        """The radius of the next step (before the cap at the box's farthest point)."""
        eps, adversarial = state.eps, state.adversarial
        if self.norm.name == "l0":
            shrunk = torch.minimum(torch.minimum(eps - 1, (eps * (1 - gamma)).floor()), state.best)
            grown = torch.maximum(eps + 1, (eps * (1 + gamma)).floor())
            return torch.where(adversarial, shrunk, grown).clamp_min(0)
        dual = torch.linalg.vector_norm(grad.reshape(len(grad), -1), ord=DUAL_ORDER[self.norm.name], dim=1)
        boundary = self.norm.measure(delta) + state.margin.abs() / dual.clamp_min(1e-12)
        grown = torch.where(state.found, eps, torch.maximum(eps, boundary)) * (1 + gamma)
        return torch.where(adversarial, torch.minimum(eps * (1 - gamma), state.best), grown)
