"""Numbers as users write them on a command line: budgets such as ``8/255``."""

from __future__ import annotations

import math
import re

_FRACTION = re.compile(r"^\s*([^/\s]+)\s*/\s*([^/\s]+)\s*$")


def parse_fraction(text: str | float) -> float:
    """The non-negative finite number that ``text`` writes: ``"8/255"`` gives 0.03137..., ``"0.3"`` gives 0.3.

    Args:
        text: A plain number (``"0.3"``, ``"1e-2"``) or a fraction of two plain numbers (``"8/255"``); a float
            or int is checked and returned as a float.

    Returns:
        The value as a float.

    Raises:
        ValueError: For text that is not a number or a fraction, a zero denominator, NaN, infinity or a negative
            value; the message quotes ``text``.
    """
    if isinstance(text, bool):
        raise ValueError(f"expected a number such as 0.3 or 8/255, got {text!r}")
    if isinstance(text, (int, float)):
        return _checked(float(text), text)
    match = _FRACTION.match(text)
    if match:
        numerator, denominator = (_plain(part, text) for part in match.groups())
        if denominator == 0:
            raise ValueError(f"{text!r} divides by zero")
        return _checked(numerator / denominator, text)
    return _checked(_plain(text, text), text)


def _plain(part: str, text: str | float) -> float:
    try:
        return float(part)
    except ValueError:
        raise ValueError(f"expected a number such as 0.3 or 8/255, got {text!r}") from None


def _checked(value: float, text: str | float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    if value < 0:
        raise ValueError(f"expected a non-negative number, got {text!r}")
    return value
