"""SPSA (Uesato, O'Donoghue, van den Oord and Kohli 2018, "Adversarial Risk and the Dangers of Evaluating
Against Weak Attacks"): Adam ascent on the margin along a simultaneous-perturbation estimate of its gradient
(Spall 1992) from the model's scores, projected onto the eps ball (L-inf or L2) and the bounds.

The estimate, the query count and the budget are those of :class:`~alva.attacks.score_gradient.ScoreGradientAttack`:
per step one query at the iterate and ``2 * samples`` at ``x +- delta * u`` with Rademacher directions ``u``.
"""

from __future__ import annotations

from typing import cast

import torch

from alva.attacks.engine import Rows, Run
from alva.attacks.errors import finite, in_interval
from alva.attacks.norms import Norm
from alva.attacks.score_gradient import ScoreGradientAttack, rademacher

__all__ = ["SPSA", "SPSARows"]


class SPSARows(Rows):
    """The rows of an SPSA search with Adam's moment estimates."""

    first_moment: torch.Tensor
    second_moment: torch.Tensor


class SPSA(ScoreGradientAttack):
    """Score-based gradient estimation with Rademacher directions and Adam steps.

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        n_queries: the per-sample budget of model evaluations, the clean one included.
        samples: pairs of symmetric queries per step (the estimate spends ``2 * samples``).
        delta: the finite-difference step (Uesato et al.: 0.01).
        lr: Adam's learning rate (Uesato et al.: 0.01).
        betas: Adam's decay rates of the first and second moments.
        norm: ``"linf"`` or ``"l2"``.

    ``max_rows`` (the most queried points in one forward pass), ``loss`` (the objective raised: ``"margin"``, the
    default, or ``"ce"``) and ``early_stop`` (default True) are those of
    :class:`~alva.attacks.score_gradient.ScoreGradientAttack`;
    ``target``, ``bounds`` and ``seed`` those of any attack.
    ``steps`` counts the Adam steps per sample.
    """

    directions = staticmethod(rademacher)
    rows_type = SPSARows

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, n_queries: int = 10000, *, samples: int = 32,
                 delta: float = 0.01, lr: float = 0.01, betas: tuple[float, float] = (0.9, 0.999),
                 norm: str | Norm = "linf", **kwargs) -> None:
        super().__init__(model, eps, n_queries, samples=samples, delta=delta, norm=norm, **kwargs)
        self.lr = finite("lr", lr, strict=True)
        self.betas = (in_interval("betas[0]", betas[0], "[0, 1)"), in_interval("betas[1]", betas[1], "[0, 1)"))

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        state = cast(SPSARows, rows)
        state.first_moment = torch.zeros_like(rows.x0)
        state.second_moment = torch.zeros_like(rows.x0)
        return super().start(run, rows)

    def update(self, rows: Rows, estimate: torch.Tensor, k: int) -> torch.Tensor:
        beta1, beta2 = self.betas
        state = cast(SPSARows, rows)
        m = state.first_moment.mul_(beta1).add_(estimate, alpha=1 - beta1)
        v = state.second_moment.mul_(beta2).addcmul_(estimate, estimate, value=1 - beta2)
        m_hat, v_hat = m / (1 - beta1 ** (k + 1)), v / (1 - beta2 ** (k + 1))
        return self.project(rows, rows.x + self.lr * m_hat / (v_hat.sqrt() + 1e-8))
