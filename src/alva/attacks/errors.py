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


def check_index_tensor(values, n: int, upper: int, what: str) -> torch.Tensor:
    """``values`` as int64 if it is a 1-D integer tensor of length ``n`` with entries in ``[0, upper)``."""
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        raise AttackInputError(f"target must be a tensor of shape ({n},) holding {what}")
    if values.dtype == torch.bool or values.is_floating_point() or values.is_complex():
        raise AttackInputError(f"target must hold integer {what}, got dtype {values.dtype}")
    check_label_range(values, upper, f"target {what}")
    return values.long()
