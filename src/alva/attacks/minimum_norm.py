"""Minimum-norm attacks: each sample's smallest adversarial perturbation, and so robust accuracy at every eps.

A minimum-norm attack (Carlini-Wagner, DeepFool, FAB, FMN, DDN, EAD) does not work inside a given eps ball: it
looks for the adversarial point closest to the clean one. Its :class:`MinimumNormResult` holds that point and
its distance per sample, so one run gives the robust accuracy at any eps (:meth:`MinimumNormResult.curve`).
With ``eps`` set, success also requires the distance to be at most eps (as AutoAttack counts FAB).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from alva.attacks.base import AttackResult
from alva.attacks.engine import EngineAttack, Rows, Run
from alva.attacks.errors import finite
from alva.attacks.keep_best import KeepBest
from alva.attacks.norms import Norm

__all__ = ["MIN_NORM_RULE", "MinimumNormAttack", "MinimumNormResult", "distance_tolerance"]

MIN_NORM_RULE = KeepBest("higher", final_success_wins=False)
"""A success beats a failure; between successes the smaller norm (higher score ``-norm``) wins. The clean
point's score is +inf, so a failure never replaces it and a sample misclassified before the attack stays put."""


def distance_tolerance(eps: float) -> float:
    """The slack allowed when comparing a measured distance with ``eps`` (float rounding of the projection)."""
    return eps * 1e-5 + 1e-7


@dataclass
class MinimumNormResult(AttackResult):
    """An :class:`AttackResult` with each sample's smallest adversarial perturbation found.

    norm: the name of the norm (``"l2"``, ``"linf"``, ``"l1"``, ``"l0"``).
    distances: per sample, the norm of ``x_adv - x`` where the attack succeeded, 0 for a sample misclassified
    before the attack, ``inf`` where it failed.
    """

    norm: str = ""
    distances: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    def robust_accuracy(self, eps: float) -> float:
        """The fraction of samples with no adversarial point found within ``eps``."""
        return (self.distances > eps + distance_tolerance(eps)).float().mean().item()

    def curve(self, eps_values: Sequence[float]) -> list[float]:
        """Robust accuracy at each eps of ``eps_values``."""
        return [self.robust_accuracy(float(eps)) for eps in eps_values]


class MinimumNormAttack(EngineAttack):
    """Base of the minimum-norm attacks: the rule that keeps each sample's smallest adversarial point, the
    offer of candidates with their norm as score, and the result with distances.

    A subclass sets ``self.norm`` (a :class:`~alva.attacks.norms.Norm`) and ``self.eps`` (None, or a float:
    success needs the distance to be at most eps) and offers its candidates with :meth:`offer_points`.
    """

    rule = MIN_NORM_RULE
    norm: Norm
    eps: float | None = None

    def set_eps(self, eps: float | None) -> None:
        """Check and store the optional eps."""
        self.eps = None if eps is None else finite("eps", eps)

    def clean_score(self, clean_logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        return torch.full((len(clean_logits),), float("inf"), device=clean_logits.device)

    def distance(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample norm of ``x - x0``."""
        return self.norm.measure(x - x0)

    def within_eps(self, distance: torch.Tensor) -> torch.Tensor:
        if self.eps is None:
            return torch.ones_like(distance, dtype=torch.bool)
        return distance <= self.eps + distance_tolerance(self.eps)

    def offer_points(self, run: Run, rows: Rows, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Offer candidate points ``x`` (with their ``logits``) for ``rows``; returns their success mask (the
        attack's success and, with eps, the distance within eps)."""
        distance = self.distance(x, rows.x0)
        success = self.is_success(x, logits, rows.y, rows.target) & self.within_eps(distance)
        run.offer(rows, x, logits, -distance, success)
        return success

    def finish(self, run: Run) -> MinimumNormResult:
        result = run.result()
        distance = self.distance(result.x_adv, run.x)
        success = result.success & self.within_eps(distance)
        distances = torch.where(success, distance, torch.full_like(distance, float("inf")))
        x_adv = torch.where(success.view(-1, *[1] * (run.x.ndim - 1)), result.x_adv, run.x)
        logits = torch.where(success[:, None], result.adv_logits, run.clean_logits)
        return MinimumNormResult(x_adv, success, result.steps, result.queries, logits,
                                 result.clean_logits, result.target, result.extras, norm=self.norm.name,
                                 distances=distances)
