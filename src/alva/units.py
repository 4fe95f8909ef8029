"""Numbers as users write them on a command line: budgets such as ``8/255`` and per-channel lists such as
``0.49,0.48,0.45``."""

from __future__ import annotations

import math
import re

_FRACTION = re.compile(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*$")
_EXAMPLE = "a number such as 0.3 or 8/255"


def parse_fraction(text: str | float, *, negative: bool = False) -> float:
    """The finite number that ``text`` writes: ``"8/255"`` gives 0.03137..., ``"0.3"`` gives 0.3.

    Args:
        text: A plain number (``"0.3"``, ``"1e-2"``) or a fraction of two plain numbers (``"8/255"``); a float
            or int is checked and returned as a float.
        negative: Whether negative values are accepted (bounds such as ``-1``); budgets are never negative.

    Raises:
        ValueError: For text that is not a number or a fraction, a zero denominator, NaN, infinity or (unless
            ``negative``) a negative value; the message quotes ``text``.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected {_EXAMPLE}, got {text!r}")
    if isinstance(text, (int, float)):
        return _checked(float(text), text, negative)
    match = _FRACTION.match(text)
    if match:
        numerator, denominator = (_plain(part, text) for part in match.groups())
        if denominator == 0:
            raise ValueError(f"{text!r} divides by zero")
        return _checked(numerator / denominator, text, negative)
    return _checked(_plain(text, text), text, negative)


def parse_floats(text: str, *, count: int | None = None, negative: bool = False) -> tuple[float, ...]:
    """The comma-separated numbers of ``text`` (each as :func:`parse_fraction` reads it): ``"0.5,0.5,0.5"``.

    Args:
        text: Numbers separated by commas, such as a per-channel mean ``"0.4914,0.4822,0.4465"`` or bounds
            ``"0,1"``.
        count: How many numbers are required; None accepts any number of at least one.
        negative: Whether negative values are accepted.

    Raises:
        ValueError: For an empty list, the wrong count, or any item :func:`parse_fraction` refuses.
    """
    items = text.split(",")
    if not text.strip() or any(not item.strip() for item in items):
        raise ValueError(f"expected comma-separated numbers such as 0.5,0.5,0.5, got {text!r}")
    if count is not None and len(items) != count:
        raise ValueError(f"expected {count} comma-separated numbers, got {len(items)} in {text!r}")
    return tuple(parse_fraction(item, negative=negative) for item in items)


def _plain(part: str, text: str | float) -> float:
    try:
        return float(part)
    except ValueError:
        raise ValueError(f"expected {_EXAMPLE}, got {text!r}") from None


def _checked(value: float, text: str | float, negative: bool) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    if value < 0 and not negative:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    return value
