"""NES gradient estimation with projected steps (Ilyas, Engstrom, Athalye and Lin 2018, "Black-box Adversarial
Attacks with Limited Queries and Information"): natural evolution strategies (Wierstra et al. 2014) estimate
the gradient of the loss from the model's scores with antithetic Gaussian samples, and a PGD step follows it
under L-inf (its sign) or L2 (its direction), projected onto the eps ball and the bounds.

The estimate, the query count and the budget are those of :class:`~alva.attacks.score_gradient.ScoreGradientAttack`:
per step one query at the iterate and ``2 * samples`` at ``x +- sigma * u`` with standard normal ``u``.
"""

from __future__ import annotations

import torch

from alva.attacks.engine import Rows
from alva.attacks.errors import finite
from alva.attacks.norms import Norm
from alva.attacks.score_gradient import ScoreGradientAttack, gaussian

__all__ = ["NES"]


class NES(ScoreGradientAttack):
    """Score-based gradient estimation with antithetic Gaussian samples and PGD steps.

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        n_queries: the per-sample budget of model evaluations, the clean one included.
        samples: antithetic pairs per step (the estimate spends ``2 * samples``; Ilyas et al.: 25 pairs).
        sigma: the search variance, the size of each query's Gaussian perturbation (Ilyas et al.: 0.001).
        alpha: the step size of each PGD step, in the units of ``norm``.
        norm: ``"linf"`` or ``"l2"``.

    ``max_rows`` (the most queried points in one forward pass), ``loss`` (the objective raised: ``"margin"``, the
    default, or ``"ce"``) and ``early_stop`` (default True) are those of
    :class:`~alva.attacks.score_gradient.ScoreGradientAttack`;
    ``target``, ``bounds`` and ``seed`` those of any attack.
    ``steps`` counts the PGD steps per sample.
    """

    directions = staticmethod(gaussian)

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, n_queries: int = 10000, *, samples: int = 25,
                 sigma: float = 0.001, alpha: float = 0.01, norm: str | Norm = "linf", **kwargs) -> None:
        super().__init__(model, eps, n_queries, samples=samples, delta=sigma, norm=norm, **kwargs)
        self.alpha = finite("alpha", alpha, strict=True)

    @property
    def sigma(self) -> float:
        return self.delta

    def update(self, rows: Rows, estimate: torch.Tensor, k: int) -> torch.Tensor:
        return self.norm.ascend(rows.x, estimate, rows.x0, self.alpha, self.eps).clamp_(*self.bounds)
