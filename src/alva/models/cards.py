"""What a classifier's card says about rebuilding it: an alva ``architecture`` or the user's ``factory``.

A card of an alva architecture holds ``architecture``, ``num_classes``, ``in_shape``, ``mean`` and ``std``;
a card of a model of the user's own code holds ``factory`` (``/abs/path/file.py:build`` or
``package.module:build``), ``kwargs``, ``mean``, ``std``, ``bounds`` and, once known, ``in_shape`` and
``num_classes``. A card that names a factory runs that code when loaded, so :func:`alva.models.load` loads it
only with ``trust_code=True`` (``--trust-code`` on the command line): give it only for code you trust (a card
may not name the Python standard library).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from alva.models.classifiers import ARCHITECTURES, create
from alva.models.factory import ModelLoadError, call_factory, import_factory
from alva.models.wrapper import Normalized

DEFAULT_BOUNDS = (0.0, 1.0)


def build_from_card(info: Mapping[str, Any], source: str) -> Normalized:
    """A freshly initialised model as ``info`` describes it (``source`` names the card in errors).

    Raises:
        ModelLoadError: The card names neither a known architecture nor a factory that builds a model.
        FileNotFoundError: The card's factory file does not exist.
    """
    if "factory" in info:
        net = call_factory(info["factory"], info.get("kwargs") or {}, from_card=True)
        return wrap_factory_model(net, info["factory"], info.get("kwargs") or {}, mean=info["mean"],
                                  std=info["std"], bounds=info.get("bounds"), in_shape=info.get("in_shape"),
                                  num_classes=info.get("num_classes"))
    _check_architecture(info, source)
    return create(info["architecture"], num_classes=info["num_classes"], in_shape=tuple(info["in_shape"]),
                  mean=tuple(info["mean"]), std=tuple(info["std"]))


def wrap_factory_model(net: nn.Module, reference: str, kwargs: Mapping[str, Any], *,
                       mean: Sequence[float] | None, std: Sequence[float] | None,
                       bounds: Sequence[float] | None, in_shape: Sequence[int] | None = None,
                       num_classes: int | None = None) -> Normalized:
    """``net`` in :class:`Normalized` (identity statistics when ``mean`` and ``std`` are None), carrying the
    ``spec`` that its card records."""
    if (mean is None) != (std is None):
        raise ModelLoadError(f"model {reference!r}: give both mean and std, or neither")
    model = Normalized(net, tuple(mean) if mean is not None else (0.0,), tuple(std) if std is not None else (1.0,))
    model.spec = {"factory": reference, "kwargs": dict(kwargs), "num_classes": num_classes,
                  "in_shape": list(in_shape) if in_shape is not None else None,
                  "bounds": list(check_bounds(bounds if bounds is not None else DEFAULT_BOUNDS, reference))}
    return model


def check_bounds(bounds: Sequence[float], source: str) -> tuple[float, float]:
    """``bounds`` as a (low, high) pair of finite numbers with low < high, else a ModelLoadError."""
    values = tuple(float(b) for b in bounds)
    if len(values) != 2 or not all(math.isfinite(b) for b in values) or values[0] >= values[1]:
        raise ModelLoadError(f"model {source!r}: bounds must be two finite numbers low < high, got {tuple(bounds)}")
    return values[0], values[1]


def check_card(info: Mapping[str, Any], model: nn.Module, source: str) -> None:
    """Refuse a card that could not rebuild ``model``: no ``mean``/``std``, an unknown architecture, a
    factory that does not import, values JSON cannot hold, or (for an architecture) other weight shapes.

    Raises:
        ModelLoadError: Naming the first problem found.
    """
    missing = [k for k in ("mean", "std") if k not in info]
    if missing:
        raise ModelLoadError(f"{source}: card lacks {missing}")
    try:
        json.dumps(dict(info), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"{source}: the card holds a value JSON cannot store ({err})") from err
    if "factory" in info:
        import_factory(info["factory"], from_card=True)
        if info.get("bounds") is not None:
            check_bounds(info["bounds"], source)
        return
    _check_architecture(info, source)
    with torch.device("meta"):  # shapes only: no memory, no draw from the random number generator
        reference = build_from_card(info, source)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if expected != actual:
        differ = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
        raise ModelLoadError(f"{source}: the card's {info['architecture']!r} does not have the model's weights "
                             f"(they differ at {', '.join(differ[:4])})")


def _check_architecture(info: Mapping[str, Any], source: str) -> None:
    if "architecture" not in info:
        raise ModelLoadError(f"{source}: the card names neither an 'architecture' of alva.models.create nor a "
                             "'factory' (FILE.py:FUNCTION) that builds the model")
    if info["architecture"] not in ARCHITECTURES:
        raise ModelLoadError(f"{source}: the card's architecture {info['architecture']!r} is not one of "
                             f"{sorted(ARCHITECTURES)}; a model of your own code is rebuilt from a card with "
                             "'factory': 'FILE.py:FUNCTION'")
    missing = [k for k in ("num_classes", "in_shape") if k not in info]
    if missing:
        raise ModelLoadError(f"{source}: card lacks {missing}")
