"""An ensemble of classifiers that attacks treat as one model: several substitutes for a transfer attack (Liu et al.
2017, "Delving into Transferable Adversarial Examples and Black-box Attacks"; the logit ensemble of Dong et al.
2018, "Boosting Adversarial Attacks with Momentum").

``mode="logits"``: the output is the mean of the members' logits, and an attack's loss is taken on that mean.
``mode="loss"``: the output is the log of the members' mean probability (what decides the ensemble's class), and an
attack that asks :meth:`EnsembleModel.logits_and_loss` (the transfer-enhancing attacks of
:mod:`alva.attacks.transfer_fgsm`) gets the mean of the members' losses, whose gradient is exactly the mean of the
members' loss gradients, for any loss. No function of the input alone can give that gradient to a cross-entropy
taken on the ensemble's output (the log-sum-exp of the mean log-probabilities adds a term), hence the method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from alva.attacks.errors import AttackInputError

__all__ = ["ENSEMBLE_MODES", "EnsembleModel", "logits_and_loss"]

ENSEMBLE_MODES = ("logits", "loss")


class EnsembleModel(nn.Module):
    """Several classifiers with the same inputs and outputs, used as one.

    Args:
        models: the members (at least one), each returning logits for the same images.
        mode: ``"logits"`` (the mean of the logits) or ``"loss"`` (the mean of the losses, see the module
            docstring).
    """

    def __init__(self, models: Sequence[nn.Module], mode: str = "logits") -> None:
        super().__init__()
        members = list(models)
        if not members or not all(isinstance(m, nn.Module) for m in members):
            raise AttackInputError("an ensemble needs at least one torch.nn.Module")
        if mode not in ENSEMBLE_MODES:
            raise AttackInputError(f"unknown ensemble mode {mode!r}; choose one of {ENSEMBLE_MODES}")
        self.members = nn.ModuleList(members)
        self.mode = mode

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits at ``x``."""
        return [member(x) for member in self.members]

    def combine(self, outputs: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ensemble's output from its members' logits."""
        stacked = torch.stack(list(outputs))
        if self.mode == "logits":
            return stacked.mean(dim=0)
        return torch.logsumexp(stacked.log_softmax(dim=-1), dim=0) - math.log(len(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine(self.member_logits(x))

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def logits_and_loss(model: nn.Module, x: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """``model``'s output at ``x`` and the per-sample ``loss`` of it; for an :class:`EnsembleModel` in
    ``"loss"`` mode, the loss is the mean of the members' losses (one pass through each member)."""
    if isinstance(model, EnsembleModel) and model.mode == "loss":
        outputs = model.member_logits(x)
        return model.combine(outputs), torch.stack([loss(o) for o in outputs]).mean(dim=0)
    logits = model(x)
    return logits, loss(logits)
