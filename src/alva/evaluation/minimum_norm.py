"""The figures of a minimum-norm attack: from each sample's smallest adversarial perturbation, the robust
accuracy at every eps (one run gives the whole curve) and the median and mean size of the perturbations.

A distance is the norm of a sample's smallest adversarial perturbation found, 0 for a sample misclassified
before the attack and ``inf`` where the attack failed (:class:`~alva.attacks.minimum_norm.MinimumNormResult`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from alva.attacks.base import Attack
from alva.attacks.engine import Repeated
from alva.attacks.minimum_norm import MinimumNormAttack, distance_tolerance

__all__ = ["CURVE_POINTS", "curve_from_distances", "default_eps_values", "minimum_norm_name", "minimum_norm_summary"]

CURVE_POINTS = 7
"""How many eps values a curve has when none are given."""


def minimum_norm_name(attack: Attack) -> str | None:
    """The norm of a minimum-norm attack (also inside :class:`~alva.attacks.engine.Repeated`), else None."""
    while isinstance(attack, Repeated):
        attack = attack.attack
    return attack.norm.name if isinstance(attack, MinimumNormAttack) else None


def robust_at(distances: torch.Tensor, eps: float) -> float:
    """The fraction of samples with no adversarial point within ``eps``."""
    return (distances > eps + distance_tolerance(eps)).float().mean().item() if len(distances) else 0.0


def curve_from_distances(distances: torch.Tensor, eps_values: Sequence[float]) -> list[dict[str, float]]:
    """Robust accuracy at each eps of ``eps_values``, read from the distances (no attack is run)."""
    return [{"eps": float(eps), "robust_acc": robust_at(distances, float(eps))} for eps in eps_values]


def default_eps_values(distances: torch.Tensor, points: int = CURVE_POINTS) -> list[float]:
    """``points`` evenly spaced eps values from 0 to the largest distance found (rounded up to 2 significant
    digits), so that the curve reaches the robust accuracy left at any eps."""
    finite = distances[torch.isfinite(distances)]
    largest = finite.max().item() if len(finite) else 0.0
    if largest <= 0:
        return [0.0]
    scale = 10 ** (math.floor(math.log10(largest)) - 1)
    top = math.ceil(largest / scale) * scale
    return [round(top * i / (points - 1), 10) for i in range(points)]


def minimum_norm_summary(distances: torch.Tensor, clean_ok: torch.Tensor, norm: str,
                         eps_values: Sequence[float] | None = None) -> dict[str, Any]:
    """The figures of a minimum-norm attack on a set.

    Args:
        distances: per sample, the norm of the smallest adversarial perturbation found (0 for a sample
            misclassified clean, inf where the attack failed).
        clean_ok: per sample, whether the model classifies the clean input correctly.
        norm: the name of the norm of the distances.
        eps_values: where to read the robust accuracy; default :func:`default_eps_values`.

    Returns:
        ``norm``; ``success_rate`` (the fraction of clean-correct samples broken); ``median`` and ``mean`` of the
        distances of those broken samples (NaN when none); ``median_all`` the median over every sample (0 for
        clean-wrong ones, inf for failures: the eps at which robust accuracy falls to half); ``curve``: robust
        accuracy at each eps.
    """
    distances = distances.detach().cpu().float()
    clean_ok = clean_ok.detach().cpu().bool()
    broken = distances[clean_ok & torch.isfinite(distances)]
    values = default_eps_values(distances) if eps_values is None else [float(e) for e in eps_values]
    return {
        "norm": norm,
        "success_rate": len(broken) / max(int(clean_ok.sum()), 1),
        "median": broken.median().item() if len(broken) else float("nan"),
        "mean": broken.mean().item() if len(broken) else float("nan"),
        "median_all": distances.median().item() if len(distances) else float("nan"),
        "curve": curve_from_distances(distances, values),
    }
