"""The difference-of-logits-ratio (DLR) loss of Croce and Hein (2020), "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks", Section 4.

DLR is a margin divided by a spread of the logits, so it does not change when the logits are shifted or
scaled: a model whose logits are multiplied by 1000 (which saturates the softmax and kills the gradient of
the cross-entropy) gives exactly the same DLR and the same sign of its gradient.

Untargeted, with the logits ``z`` sorted so that ``z_pi1 >= z_pi2 >= ...``::

    DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12)

Targeted at class ``t``::

    DLR_T(z, y, t) = -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)

Both are maximised by the attacks. The untargeted loss is positive exactly when ``x`` is misclassified.
"""

from __future__ import annotations

import torch

from alva.attacks.errors import AttackInputError
from alva.attacks.losses import ClassLoss, margin

__all__ = ["DLRLoss", "dlr", "dlr_targeted"]


def dlr(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Untargeted DLR per sample (needs at least 3 classes)."""
    top = logits.sort(dim=1, descending=True).values
    return margin(logits, labels, False) / (top[:, 0] - top[:, 2] + 1e-12)


def dlr_targeted(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR per sample: raises the target logit over the true one (needs at least 4 classes)."""
    top = logits.sort(dim=1, descending=True).values
    own = logits.gather(1, labels[:, None]).squeeze(1)
    tgt = logits.gather(1, target[:, None]).squeeze(1)
    return -(own - tgt) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def _dlr_objective(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    # Only for the (logits, labels, targeted) signature of ClassLoss; DLRLoss.__call__ is what attacks use.
    if targeted:
        raise AttackInputError("targeted DLR needs the true labels as well as the targets; use DLRLoss")
    return dlr(logits, labels)


class DLRLoss(ClassLoss):
    """DLR as an :class:`~alva.attacks.losses.AttackLoss` on class labels: untargeted when ``target`` is None,
    else the targeted DLR, which uses both the true label and the target. Success is as for every class loss:
    misclassified, or classified as the target."""

    def __init__(self) -> None:
        super().__init__(_dlr_objective)

    def __call__(self, logits, y, target):
        return dlr(logits, y) if target is None else dlr_targeted(logits, y, target)

    def check_labels(self, y, num_outputs):
        if num_outputs is not None and num_outputs < 3:
            raise AttackInputError(f"the DLR loss needs a model with at least 3 classes, got {num_outputs}")
        return super().check_labels(y, num_outputs)

    def check_targets(self, target, y, num_outputs):
        if num_outputs < 4:
            raise AttackInputError(f"the targeted DLR loss needs a model with at least 4 classes, got {num_outputs}")
        return super().check_targets(target, y, num_outputs)

    def pick_targets(self, rule, y, clean_logits, uniform):
        if clean_logits.shape[1] < 4:
            raise AttackInputError("the targeted DLR loss needs a model with at least 4 classes, "
                                   f"got {clean_logits.shape[1]}")
        return super().pick_targets(rule, y, clean_logits, uniform)

    def __repr__(self) -> str:
        return "dlr"
