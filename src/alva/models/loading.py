"""One entry point for every classifier a user can name, and what a loaded model takes and gives.

``load`` accepts a zoo name (``mnist/cnn-small``), a ``.safetensors`` weights file with its card, a run folder
of ``alva train`` (``model.safetensors`` and its card) and the user's own code, ``FILE.py:FUNCTION`` or
``package.module:FUNCTION``. Pickles (``.pt``, ``.pth``, ``.ckpt``) are refused: alva never unpickles.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from alva.models import zoo
from alva.models.cards import DEFAULT_BOUNDS, check_bounds, wrap_factory_model
from alva.models.classifiers import ARCHITECTURES, create
from alva.models.factory import ModelLoadError, call_factory, canonical_reference, is_factory_spec, load_state
from alva.models.wrapper import Normalized


@dataclass(frozen=True)
class ModelIO:
    """What a classifier takes and gives: ``in_shape`` (C, H, W; None when unknown), ``num_classes`` (None when
    unknown) and the ``bounds`` of its inputs."""

    in_shape: tuple[int, int, int] | None
    num_classes: int | None
    bounds: tuple[float, float]


def load(spec: str | os.PathLike, *, weights: str | os.PathLike | None = None,
         mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
         bounds: Sequence[float] | None = None, kwargs: Mapping[str, Any] | None = None,
         in_shape: Sequence[int] | None = None, device: str | torch.device = "cpu",
         trust_code: bool = False, verify: bool = True) -> Normalized:
    """A ready classifier in eval mode, carrying its card as ``model.card``.

    Loading ``FILE.py:FUNCTION`` or ``package.module:FUNCTION`` imports that code and calls the function: it
    trusts that code as running it would. A card that names such a factory (a run folder of
    ``alva train --model FILE.py:FUNCTION``) runs that code too, so it loads only with ``trust_code=True``.
    The function's result is wrapped in :class:`~alva.models.Normalized` (identity statistics unless ``mean``
    and ``std`` are given).

    Args:
        spec: A zoo name, a ``.safetensors`` file with a card, a run folder, or a factory spec.
        weights: Factory specs only: a ``.safetensors`` file holding a plain state dict of the function's
            module (a ``module.`` prefix from ``DataParallel`` is dropped).
        mean: Factory specs only: the per-channel mean the inputs are standardised with.
        std: Factory specs only: the per-channel standard deviation, given with ``mean``.
        bounds: Factory specs only: the (low, high) range of the inputs; (0, 1) when not given.
        kwargs: Factory specs only: keyword arguments of the function (JSON values, recorded in the card).
        in_shape: The (C, H, W) shape of the inputs the model will get: the model is probed with a zero batch of
            it (an error if it does not fit); a factory model records it and its number of outputs in its card.
        device: Where the model goes.
        trust_code: Load a card that names a factory, importing and running the code it names.
        verify: Check that weights with a card have the SHA-256 the card records (turn it off for weights
            changed on purpose).

    Returns:
        The model, in eval mode, with ``model.card`` (and ``model.spec``, which :func:`alva.models.save` needs).

    Raises:
        FileNotFoundError: No such zoo name (close names listed), file, run folder or factory file.
        ModelLoadError: (a ``ValueError``) a pickle, a factory that does not import, raises or returns no
            ``nn.Module``, weights that do not fit, a card with an unknown architecture, factory options given
            with another spec, a model that does not take ``in_shape``, or a card that names a factory
            without ``trust_code``.
        DamagedFileError: (a ``ValueError``) weights that do not have the SHA-256 of their card.
    """
    text = str(spec)
    if is_factory_spec(text) and not Path(text).exists():
        model = _from_factory(text, weights, mean, std, bounds, dict(kwargs or {}))
    else:
        given = [name for name, value in (("weights", weights), ("mean", mean), ("std", std), ("bounds", bounds),
                                          ("kwargs", kwargs)) if value is not None]
        if given:
            raise ModelLoadError(f"model {text!r}: {', '.join(given)} apply to FILE.py:FUNCTION models only; "
                                 "a zoo model, weights file or run folder carries them in its card")
        refuse_untrusted_code(text, trust_code)
        model = cast(Normalized, zoo.load(text, verify=verify))
    model = model.to(device).eval()
    if in_shape is not None:
        outputs = probe(model, tuple(in_shape), text)
        if "factory" in model.spec:
            model.spec = {**model.spec, "in_shape": list(in_shape), "num_classes": outputs}
            model.card = {**model.card, "in_shape": list(in_shape), "num_classes": outputs}
    return model


def refuse_untrusted_code(spec: str, trust_code: bool) -> None:
    """Raise :class:`ModelLoadError` when the card of ``spec`` names a factory and ``trust_code`` is not given."""
    factory = zoo.card(spec).get("factory")
    if factory and not trust_code:
        raise ModelLoadError(f"model {spec!r}: its card runs code from {factory} when loaded; pass "
                             "trust_code=True (--trust-code on the command line) if that code is trusted")


def build(spec: str, *, in_shape: Sequence[int], num_classes: int, mean: Sequence[float] | None = None,
          std: Sequence[float] | None = None, bounds: Sequence[float] | None = None,
          kwargs: Mapping[str, Any] | None = None, device: str | torch.device = "cpu") -> Normalized:
    """A freshly initialised classifier to train, from the global random number generator: an architecture of
    :func:`alva.models.create` (``preact-resnet18``) or the user's ``FILE.py:FUNCTION``.

    Args:
        spec: An architecture name or a factory spec.
        in_shape: The (C, H, W) shape of the training images.
        num_classes: The number of classes of the data; a factory model must give as many outputs.
        mean: The per-channel mean the inputs are standardised with (the architecture's default when None).
        std: The per-channel standard deviation, given with ``mean``.
        bounds: Factory specs only: the (low, high) range of the inputs; (0, 1) when not given.
        kwargs: Factory specs only: keyword arguments of the function (JSON values, recorded in the card).
        device: Where the model goes.

    Returns:
        The model in training mode, with ``model.spec`` (so :func:`alva.models.save` writes a card that
        rebuilds it).

    Raises:
        ModelLoadError: An unknown name, a factory that fails, does not take ``in_shape`` or gives another
            number of outputs than ``num_classes``.
    """
    if not is_factory_spec(spec):
        if spec not in ARCHITECTURES:
            close = difflib.get_close_matches(spec, ARCHITECTURES, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelLoadError(f"model {spec!r} is neither an architecture of alva.models.create "
                                 f"({', '.join(ARCHITECTURES)}) nor FILE.py:FUNCTION{hint}")
        if bounds is not None or kwargs is not None:
            raise ModelLoadError(f"model {spec!r}: bounds and kwargs apply to FILE.py:FUNCTION models only")
        shape = (in_shape[0], in_shape[1], in_shape[2])
        return create(spec, num_classes=num_classes, in_shape=shape, mean=None if mean is None else tuple(mean),
                      std=None if std is None else tuple(std)).to(device).train()
    model = load(spec, mean=mean, std=std, bounds=bounds, kwargs=kwargs, in_shape=in_shape, device=device)
    if model.spec["num_classes"] != num_classes:
        raise ModelLoadError(f"model {spec!r} gives {model.spec['num_classes']} outputs but the data has "
                             f"{num_classes} classes (give the function's class count in kwargs)")
    return model.train()


def _from_factory(spec: str, weights: str | os.PathLike | None, mean: Sequence[float] | None,
                  std: Sequence[float] | None, bounds: Sequence[float] | None,
                  kwargs: dict[str, Any]) -> Normalized:
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ModelLoadError(f"model {spec!r}: kwargs must be JSON values, so that the card can record them "
                             f"({err})") from err
    reference = canonical_reference(spec)
    net = call_factory(spec, kwargs)
    if weights is not None:
        zoo.refuse_pickle(weights)
        if not Path(weights).is_file():
            raise FileNotFoundError(f"model {spec!r}: no weights file {weights}")
        tensors = zoo.read_weights(weights)
        if {"mean", "std"} <= tensors.keys() and any(k.startswith("net.") for k in tensors):
            raise ModelLoadError(f"weights {weights} hold a model that alva saved with its card: load it by its "
                                 f"path, alva.models.load({str(weights)!r}), not as weights of {spec!r}")
        load_state(net, tensors, f"weights {weights} for model {spec!r}")
    try:
        model = wrap_factory_model(net, reference, kwargs, mean=mean, std=std, bounds=bounds)
    except ModelLoadError:
        raise
    except ValueError as err:  # statistics that Normalized refuses
        raise ModelLoadError(f"model {spec!r}: {err}") from err
    model.card = {**zoo.architecture_card(model), "task": "multiclass"}
    return model


def probe(model: nn.Module, in_shape: tuple[int, ...], name: str = "model") -> int:
    """The number of outputs of ``model`` on a zero batch of two ``in_shape`` images (mode restored after).

    Raises:
        ModelLoadError: The model fails on that shape, or does not give one row of logits per image.
    """
    device = next(iter(model.state_dict().values()), torch.zeros(0)).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, *in_shape, device=device))
    except Exception as err:
        expected = getattr(model, "card", {}).get("in_shape")
        hint = f" (its card says {_shape(expected)})" if expected else ""
        raise ModelLoadError(f"model {name!r} does not take inputs of shape {_shape(in_shape)}{hint}: "
                             f"{type(err).__name__}: {err}") from err
    finally:
        model.train(training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelLoadError(f"model {name!r} gives {got} for two images; expected logits of shape (2, classes)")
    return int(out.shape[1])


def model_io(model: nn.Module, in_shape: Sequence[int] | None = None) -> ModelIO:
    """What ``model`` takes and gives: from a probe with a zero batch when ``in_shape`` is given, else from its
    card (``model.card``, or ``model.spec`` for a model made by :func:`alva.models.create`)."""
    info = {**getattr(model, "spec", {}), **getattr(model, "card", {})}
    bounds = check_bounds(info.get("bounds") or DEFAULT_BOUNDS, "model")
    if in_shape is not None:
        shape = tuple(int(d) for d in in_shape)
        return ModelIO((shape[0], shape[1], shape[2]), probe(model, shape), bounds)
    card_shape = info.get("in_shape")
    shape3 = (int(card_shape[0]), int(card_shape[1]), int(card_shape[2])) if card_shape else None
    return ModelIO(shape3, info.get("num_classes"), bounds)


def check_fits(model: nn.Module, in_shape: Sequence[int], num_classes: int, *, model_name: str = "model",
               data_name: str = "the data") -> ModelIO:
    """Refuse data that ``model`` cannot classify: images of ``in_shape`` it fails on, or another number of
    classes than its outputs. Returns the model's :class:`ModelIO` for that shape.

    Raises:
        ModelLoadError: Naming the model, the data and what differs.
    """
    shape = tuple(int(d) for d in in_shape)
    try:
        outputs = probe(model, shape, model_name)
    except ModelLoadError as err:
        raise ModelLoadError(f"{data_name} ({_shape(shape)} images) does not fit: {err}") from err
    if outputs != num_classes:
        raise ModelLoadError(f"model {model_name!r} gives {outputs} outputs but {data_name} has {num_classes} "
                             "classes")
    return ModelIO((shape[0], shape[1], shape[2]), outputs, model_io(model).bounds)


def _shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape)
