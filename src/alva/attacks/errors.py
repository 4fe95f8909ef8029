"""The error every attack raises for input it cannot attack, and the label range check."""

from __future__ import annotations

import torch


class AttackInputError(ValueError):
    """The batch given to an attack (or its settings) cannot be attacked as it is."""


def check_label_range(labels: torch.Tensor, num_classes: int, what: str = "labels") -> None:
    if (labels < 0).any() or (labels >= num_classes).any():
        raise AttackInputError(
            f"{what} must be in [0, {num_classes - 1}] for a model with {num_classes} outputs, "
            f"got values in [{int(labels.min())}, {int(labels.max())}]"
        )
