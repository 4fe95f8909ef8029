"""The error every attack raises for input it cannot attack, the label range check, and the check of what a
model gives (one finite row of logits per input: a number that cannot be trusted is never reported)."""

from __future__ import annotations

from typing import Any

import torch


class AttackInputError(ValueError):
    """The batch given to an attack (or its settings) cannot be attacked as it is."""


class ModelOutputError(AttackInputError):
    """A model's output cannot be scored: not a tensor, not one row of logits per input, or NaN or infinite."""


class ModelFailedError(AttackInputError, RuntimeError):
    """The model raised on the clean batch (images it does not take, most often); a ``RuntimeError`` too, as the
    model's own error was."""


def checked_logits(logits: Any, n: int, what: str = "the model") -> torch.Tensor:
    """``logits`` if they are a tensor of shape ``(n, outputs)`` holding finite numbers only.

    Raises:
        ModelOutputError: Naming what ``what`` returned and what was expected.
    """
    if not isinstance(logits, torch.Tensor):
        raise ModelOutputError(f"{what} returns a {type(logits).__name__}, not a tensor of logits; make its "
                               "forward return the logits alone (shape N x classes)")
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ModelOutputError(f"{what} gives logits of shape {tuple(logits.shape)} for {n} inputs; expected "
                               f"({n}, classes), one row per input")
    bad = ~torch.isfinite(logits).all(dim=1)
    if bad.any():
        raise ModelOutputError(f"{what} gives NaN or infinite logits for {int(bad.sum())} of {n} inputs; figures "
                               "computed from them cannot be trusted (check the weights and the inputs' scale)")
    return logits


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


def finite(name: str, value, low: float = 0.0, *, strict: bool = False) -> float:
    """``value`` as a float, or :class:`AttackInputError` unless it is finite and ``>= low`` (``> low`` when
    ``strict``): the check of every radius, step size and weight of the attacks."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
        low < value < float("inf") if strict else low <= value < float("inf"))
    if not ok:
        raise AttackInputError(f"{name} must be {'>' if strict else '>='} {low:g} and finite, got {value}")
    return float(value)


def in_interval(name: str, value, interval: str) -> float:
    """``value`` as a float, or :class:`AttackInputError` unless it lies in ``interval``, written as in
    mathematics: ``"(0, 1]"``, ``"[0, 1)"``..."""
    low, high = (float(part) for part in interval[1:-1].split(","))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    above = number and (low < value if interval[0] == "(" else low <= value)
    ok = above and (value < high if interval[-1] == ")" else value <= high)
    if not ok:
        raise AttackInputError(f"{name} must be in {interval}, got {value}")
    return float(value)


def integer_at_least(name: str, value, low: int) -> int:
    """``value`` as an int, or :class:`AttackInputError` unless it is a whole number >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or not low <= value < 2**62 \
            or int(value) != value:
        raise AttackInputError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def positive_int(name: str, value) -> int:
    """``value`` as an int, or :class:`AttackInputError` unless it is a whole number >= 1."""
    return integer_at_least(name, value, 1)
