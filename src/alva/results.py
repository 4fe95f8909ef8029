"""Result types shared by the parts that compute results (evaluation, training) and the part that draws them
(report), so that neither has to import the other."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Batch"]


@dataclass
class Batch:
    """An attacked set kept for figures: clean and adversarial images with labels and predictions.

    ``success`` is the attack's own verdict per sample; ``clean_pred != y`` marks the samples that were
    misclassified before any attack (figures show them apart from the attack's successes).
    """

    x: torch.Tensor
    x_adv: torch.Tensor
    y: torch.Tensor
    clean_pred: torch.Tensor
    adv_pred: torch.Tensor
    adv_confidence: torch.Tensor
    success: torch.Tensor

    @classmethod
    def from_logits(cls, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, clean_logits: torch.Tensor,
                    adv_logits: torch.Tensor, success: torch.Tensor | None = None) -> Batch:
        """The batch of an attacked set from the model's logits, on the CPU; ``success`` defaults to
        "the adversarial prediction is wrong"."""
        adv_pred = adv_logits.argmax(1)
        if success is None:
            success = adv_pred != y
        return cls(x.detach().cpu(), x_adv.detach().cpu(), y.cpu(), clean_logits.argmax(1).cpu(), adv_pred.cpu(),
                   adv_logits.softmax(1).amax(1).detach().cpu(), success.cpu())

    @property
    def wrong_before(self) -> torch.Tensor:
        """Samples whose clean prediction was already wrong (bool)."""
        return self.clean_pred != self.y
