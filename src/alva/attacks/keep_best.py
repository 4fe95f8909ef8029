"""The one rule of the attack engine (:mod:`alva.attacks.engine`) that decides which point an attack returns
for a sample: when a candidate replaces the sample's best point so far."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["LAST_ITERATE", "PGD_RULE", "SCORE_RULE", "KeepBest"]


@dataclass(frozen=True)
class KeepBest:
    """The rule that decides when a candidate replaces a sample's best point so far.

    A success always beats a failure and, between failures, the higher score wins. Between successes,
    ``successes`` decides: ``"first"`` keeps the earlier one, ``"higher"`` the higher score, ``"latest"``
    the later one (``"latest"`` makes every candidate replace the best: the result is the last iterate).
    With ``final_success_wins`` a successful final iterate of a search replaces an earlier success (the
    textbook PGD point).
    """

    successes: str = "first"
    final_success_wins: bool = True

    def better(self, old_success: torch.Tensor, old_score: torch.Tensor, success: torch.Tensor,
               score: torch.Tensor, final: bool) -> torch.Tensor:
        if self.successes == "latest":
            return torch.ones_like(success)
        if self.successes == "higher":
            better = (success & ~old_success) | ((success == old_success) & (score > old_score))
        else:
            better = ~old_success & (success | (score > old_score))
        if final and self.final_success_wins:
            better |= success
        return better


PGD_RULE = KeepBest("first", final_success_wins=True)
"""The last successful iterate, else the first success, else the iterate of highest loss."""
SCORE_RULE = KeepBest("higher", final_success_wins=False)
"""A success, then the highest score (APGD, Square)."""
LAST_ITERATE = KeepBest("latest")
"""The last point offered (ALVA: the iterate where the walk stopped)."""
