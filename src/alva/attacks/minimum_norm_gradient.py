"""Minimum-norm attacks that walk the engine's gradient loop (Carlini-Wagner, DDN).

Such an attack is a :class:`~alva.attacks.engine.GradientAttack` (``start`` and ``step``; the engine computes
the logits and the gradient of the loss at each iterate, counts steps and queries and checks the final
iterate) whose iterates are ranked by their distance to the clean point: every iterate is offered to the
run with the score ``-distance``, so by :data:`~alva.attacks.minimum_norm.MIN_NORM_RULE` each sample keeps its
closest successful iterate, and the result is a :class:`~alva.attacks.minimum_norm.MinimumNormResult`.
"""

from __future__ import annotations

import torch

from alva.attacks.engine import GradientAttack, Rows, Run
from alva.attacks.minimum_norm import MinimumNormAttack

__all__ = ["MinimumNormGradientAttack"]


class MinimumNormGradientAttack(MinimumNormAttack, GradientAttack):
    """A gradient attack that keeps each sample's smallest successful iterate (no eps: pure minimum-norm).

    Early stop is off: a minimum-norm attack goes on shrinking a perturbation after its first success.
    """

    def __init__(self, model: torch.nn.Module, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.set_eps(None)

    def score(self, logits: torch.Tensor, loss: torch.Tensor, rows: Rows) -> torch.Tensor:
        """Minus the distance of the iterate ``rows.x`` to the clean point: the closer, the better."""
        return -self.distance(rows.x, rows.x0)

    def repeat(self, run: Run, times: int, only_unbroken: bool | None = None) -> None:
        """``times`` searches, each on every sample not already successful at the clean point (a minimum-norm
        search goes on after a success: it looks for a closer point)."""
        index = run.unbroken_rows()  # at the start: those the clean point does not already break
        for restart in range(times):
            if len(index) == 0:
                return
            self.search(run, index, restart)
