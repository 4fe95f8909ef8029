"""The data sources :func:`load` knows, registered in one place: a new source is one registered :class:`Source`.
The sources are tried in the order registered below; :func:`spec_forms` lists their spec forms with a summary
(readers: :func:`alva.data.load_mnist`, :func:`alva.data.make_multilabel_mnist`, :mod:`alva.data.cifar`,
:mod:`alva.data.arrays`, :mod:`alva.data.folder`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from alva.data.arrays import load_array_file
from alva.data.cifar import CIFAR10, CIFAR100, load_cifar
from alva.data.dataset import ImageData, numbered_names
from alva.data.folder import load_folder
from alva.data.mnist import DataError, load_mnist
from alva.data.multilabel import make_multilabel_mnist

MULTILABEL_SIZES = {"train": 30_000, "test": 5_000}


@dataclass(frozen=True)
class LoadOptions:
    """How :func:`load` reads a source: its keyword arguments of the same names (each source uses those that
    apply to it)."""

    resize: tuple[int, int] | None = None
    stream: bool | None = None
    num_workers: int = 0
    root: str | os.PathLike | None = None
    data_seed: int = 0
    count: int | None = None


@dataclass(frozen=True)
class Source:
    """A registered kind of data: the spec form it answers to and the function that reads it."""

    form: str  # how the spec is written, e.g. "cifar10:DIR"
    summary: str
    matches: Callable[[str], bool]
    read: Callable[[str, str, LoadOptions], ImageData]


SOURCES: list[Source] = []


def register(source: Source) -> Source:
    """Add ``source`` to the sources :func:`load` tries (after those already registered)."""
    SOURCES.append(source)
    return source


def spec_forms() -> list[str]:
    """Every registered spec form with its summary, one line each."""
    return [f"{s.form}: {s.summary}" for s in SOURCES]


def find_source(spec: str) -> Source:
    """The first registered source whose form ``spec`` matches; a :class:`DataError` listing them if none."""
    for source in SOURCES:
        if source.matches(spec):
            return source
    raise DataError(f"unknown data {spec!r} (no such name, file or folder); a data spec is one of:\n  "
                    + "\n  ".join(spec_forms()))


def load(spec: str, split: str = "test", *, resize: tuple[int, int] | None = None, stream: bool | None = None,
         num_workers: int = 0, root: str | os.PathLike | None = None, data_seed: int = 0,
         count: int | None = None) -> ImageData:
    """Load the ``split`` of the data set named by ``spec`` (:func:`spec_forms` lists the forms).

    Bad data (no class folders, an unreadable image, labels out of range, NaN, wrong array names, ...)
    raises :class:`alva.data.DataError` naming the file.

    Args:
        spec: The data set: ``mnist``, ``mnist-multilabel``, ``cifar10:DIR``, ``cifar100:DIR``, ``FILE.npz`` or
            ``FILE.safetensors`` (``{split}`` in the name is replaced by the split), or an image folder.
        split: ``"train"`` or ``"test"``.
        resize: ``(H, W)`` every image is resized to (bilinear), or ``None`` to keep the stored size.
        stream: Image folders: read images on demand (``True``), into memory (``False``), or in memory when
            they take at most 1 GiB as float32 (``None``). The other sources are held in memory.
        num_workers: Worker processes that read an image folder into memory.
        root: The MNIST folder for ``mnist`` and ``mnist-multilabel``.
        data_seed: Seed of the generated ``mnist-multilabel`` images.
        count: Number of generated ``mnist-multilabel`` images (default 30,000 train, 5,000 test).
    """
    if resize is not None:
        resize = (int(resize[0]), int(resize[1]))
        if min(resize) < 1:
            raise ValueError(f"resize must be (H, W) of positive sizes, got {resize}")
    options = LoadOptions(resize, stream, num_workers, root, data_seed, count)
    data = find_source(spec).read(spec, split, options)
    if resize is not None and data.x is not None and data.shape[1:] != resize:
        data = resized(data, resize)
    return data


def resized(data: ImageData, size: tuple[int, int]) -> ImageData:
    """In-memory ``data`` with every image resized to ``size`` (H, W), bilinear (antialiased), kept in [0, 1]."""
    assert data.x is not None
    x = F.interpolate(data.x, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return replace(data, shape=(data.shape[0], *size), x=x, _digest=[])


def _in_memory(spec: str, split: str, x: torch.Tensor, y: torch.Tensor, task: str, origin: str) -> ImageData:
    c, h, w = x.shape[1:]
    return ImageData(source=spec, split=split, shape=(c, h, w), class_names=numbered_names(10), task=task,
                     labels=y, x=x, origin=origin)


def _read_mnist(spec: str, split: str, options: LoadOptions) -> ImageData:
    x, y = load_mnist(split, options.root)
    return _in_memory(spec, split, x, y, "multiclass", "MNIST")


def _read_mnist_multilabel(spec: str, split: str, options: LoadOptions) -> ImageData:
    if split not in MULTILABEL_SIZES:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(MULTILABEL_SIZES)}")
    n = options.count or MULTILABEL_SIZES[split]
    x, y = make_multilabel_mnist(split, n, seed=options.data_seed, root=options.root)
    return _in_memory(spec, split, x, y, "multilabel", "multi-label MNIST")


def _prefixed(prefix: str) -> Callable[[str], bool]:
    return lambda spec: spec.startswith(prefix) and len(spec) > len(prefix)


def _is_array_file(spec: str) -> bool:
    return Path(spec).suffix in (".npz", ".safetensors")


register(Source("mnist", "MNIST digits, 1 x 28 x 28, 10 classes", lambda s: s == "mnist", _read_mnist))
register(Source("mnist-multilabel", "2 x 2 grids of 1-4 MNIST digits, 1 x 56 x 56, multi-hot over 10 classes",
                lambda s: s == "mnist-multilabel", _read_mnist_multilabel))
register(Source("cifar10:DIR", "the binary version of CIFAR-10 (data_batch_1.bin .. test_batch.bin) in DIR",
                _prefixed("cifar10:"), lambda spec, split, o: load_cifar(CIFAR10, spec, spec[8:], split)))
register(Source("cifar100:DIR", "the binary version of CIFAR-100 (train.bin, test.bin; fine labels) in DIR",
                _prefixed("cifar100:"), lambda spec, split, o: load_cifar(CIFAR100, spec, spec[9:], split)))
register(Source("FILE.npz | FILE.safetensors",
                "arrays x (uint8 0-255 or float 0-1, NCHW or NHWC) and y (N class indices or N x K multi-hot); "
                "{split} in FILE is replaced by the split", _is_array_file, lambda spec, split, o: load_array_file(
                    spec, split)))
register(Source("DIR", "an image folder: one subfolder of PNG/JPEG/BMP images per class (sorted names = "
                "class indices), or train/ and test/ folders of that layout", lambda s: Path(s).is_dir(),
                lambda spec, split, o: load_folder(spec, split, resize=o.resize, stream=o.stream,
                                                   num_workers=o.num_workers)))


__all__ = ["LoadOptions", "SOURCES", "Source", "find_source", "load", "register", "resized", "spec_forms"]
