"""Inputs of the commands that take several models or a generator: models for images that no data set
describes (a generator's samples), several comma-separated models of one option, defaults that hold only for
MNIST, and generators from the zoo, a run folder or the user's own ``FILE.py:FUNCTION``, checked against the
classifier they feed."""

from __future__ import annotations

import argparse
import copy
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn

from alva.cli.inputs import json_object, load_model
from alva.data import ImageData
from alva.models import load_generator
from alva.models.factory import ModelLoadError, call_factory, is_factory_spec
from alva.models.generative import generative_model_problems, is_conditional

MNIST_SHAPE = (1, 28, 28)
GENERATOR_HELP = ("a generator: zoo name, weights file or run folder of alva gan train, or the user's "
                  "FILE.py:FUNCTION returning a GenerativeModel (imports and runs that code)")


@dataclass(frozen=True)
class Images:
    """What a model is checked against when no data set describes its inputs: the shape and classes of a
    generator's images, and a few of them (``samples``), on which the model must give finite logits."""

    shape: tuple[int, int, int]
    num_classes: int
    source: str
    split: str = "samples"
    samples: torch.Tensor | None = field(default=None, compare=False, repr=False)


def is_mnist_shaped(data: ImageData | Images) -> bool:
    return tuple(data.shape) == MNIST_SHAPE


def mnist_default(value: str | None, data: ImageData | Images, mnist: str) -> str | None:
    """``value`` as given, else ``mnist`` for 1 x 28 x 28 data and None (the part is skipped) for other data."""
    if value is not None:
        return None if value == "none" else value
    return mnist if is_mnist_shaped(data) else None


def load_model_as(args: argparse.Namespace, data: ImageData | Images, name: str, spec: str) -> nn.Module:
    """The model ``spec`` given to option ``name`` (with that option's extra options), checked to fit ``data``."""
    view = copy.copy(args)
    setattr(view, name.lstrip("-").replace("-", "_"), spec)
    return load_model(view, cast(ImageData, data), name=name)


def load_models(args: argparse.Namespace, data: ImageData | Images, name: str) -> list[tuple[str, nn.Module]]:
    """Every comma-separated model of option ``name``, each loaded and checked to fit ``data``."""
    specs = [s.strip() for s in str(getattr(args, name.lstrip("-").replace("-", "_"))).split(",") if s.strip()]
    if not specs:
        raise ValueError(f"{name} names no model")
    return [(spec, load_model_as(args, data, name, spec)) for spec in specs]


def add_generator_options(parser: argparse.ArgumentParser, default: str | None, help_default: str = "") -> None:
    """``--generator SPEC`` and ``--generator-kwargs JSON`` (keyword arguments of a FILE.py:FUNCTION)."""
    parser.add_argument("--generator", default=default, metavar="SPEC",
                        help=GENERATOR_HELP + (f" ({help_default})" if help_default else ""))
    parser.add_argument("--generator-kwargs", default=None, metavar="JSON",
                        help="FILE.py:FUNCTION --generator only: keyword arguments of the function, as a JSON object")


def load_user_generator(spec: str, *, kwargs: str | None = None, device: str | torch.device = "cpu") -> Any:
    """A generator in eval mode: from the zoo, a weights file or run folder, or the user's function; a user's
    generator must pass :func:`alva.models.generative.generative_model_problems`."""
    if not is_factory_spec(spec):
        if kwargs is not None:
            raise ModelLoadError(f"--generator-kwargs applies to FILE.py:FUNCTION generators only, not {spec!r}")
        return load_generator(spec, device=device)
    generator = call_factory(spec, json_object(kwargs, "--generator-kwargs") or {}).to(device).eval()
    problems = generative_model_problems(generator)
    if problems:
        raise ModelLoadError(f"generator {spec!r} is not a usable generative model: {'; '.join(problems)}")
    return generator


def generator_images(generator: Any, source: str) -> Images:
    """The shape of ``generator``'s images and its number of classes (0 when unconditional)."""
    conditional = is_conditional(generator)
    z = generator.get_noise(2, seed=0)
    with torch.no_grad():
        x = generator(z, generator.get_labels(2, seed=1)) if conditional else generator(z)
    c, h, w = (int(d) for d in x.shape[1:])
    return Images((c, h, w), int(generator.num_classes) if conditional else 0, f"generator {source}", samples=x)


def check_generator_fits(images: Images, data: ImageData | Images, what: str) -> None:
    """Refuse a generator whose images are not of ``data``'s shape, or whose classes are not ``data``'s."""
    if images.shape != tuple(data.shape):
        raise ModelLoadError(f"the {images.source} makes {'x'.join(map(str, images.shape))} images but {what} "
                             f"takes {'x'.join(map(str, data.shape))} images")
    if images.num_classes and images.num_classes != data.num_classes:
        raise ModelLoadError(f"the {images.source} has {images.num_classes} classes but {what} has "
                             f"{data.num_classes}")
