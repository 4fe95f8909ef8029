"""CIFAR-10 and CIFAR-100 from their binary version (fixed-size records, no pickle).

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images" (2009).

A record is the label byte(s) then 3072 pixel bytes: the 1024 red, then green, then blue values of a
32 x 32 image, row by row. CIFAR-10 (``cifar-10-batches-bin``): ``data_batch_1.bin`` .. ``data_batch_5.bin``
(train), ``test_batch.bin`` (test), class names in ``batches.meta.txt``; one label byte. CIFAR-100
(``cifar-100-binary``): ``train.bin`` and ``test.bin``, a coarse then a fine label byte (the fine one, 100
classes, is used), class names in ``fine_label_names.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from alva.data.arrays import arrays_to_data
from alva.data.dataset import ImageData
from alva.data.mnist import DataError

PIXELS = 3 * 32 * 32


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR version keeps its files and how its records are laid out."""

    name: str
    folder: str  # the folder the binary archive unpacks to
    files: dict[str, tuple[str, ...]]
    label_bytes: int  # bytes before the pixels
    label_offset: int  # which of them is the label used
    num_classes: int
    names_file: str
    python_files: tuple[str, ...]  # files of the pickled Python version, refused
    binary_archive: str


CIFAR10 = CifarFormat(
    "CIFAR-10", "cifar-10-batches-bin",
    {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)), "test": ("test_batch.bin",)},
    1, 0, 10, "batches.meta.txt", ("data_batch_1", "test_batch", "batches.meta"), "cifar-10-binary.tar.gz")
CIFAR100 = CifarFormat(
    "CIFAR-100", "cifar-100-binary", {"train": ("train.bin",), "test": ("test.bin",)},
    2, 1, 100, "fine_label_names.txt", ("train", "test", "meta"), "cifar-100-binary.tar.gz")


def data_folder(root: Path, fmt: CifarFormat) -> Path:
    """The folder holding ``fmt``'s binary files: ``root`` itself or its ``cifar-*-bin*`` subfolder."""
    for candidate in (root, root / fmt.folder):
        if all((candidate / name).is_file() for names in fmt.files.values() for name in names[:1]):
            return candidate
    for candidate in (root, *sorted(root.glob("cifar-*-py*"))):
        if candidate.is_dir() and all((candidate / name).is_file() for name in fmt.python_files):
            raise DataError(f"{candidate}: this is the Python version of {fmt.name}, which is stored with pickle "
                            f"and is not read (unpickling can run code); download the binary version "
                            f"({fmt.binary_archive}, the {fmt.folder} folder) and point at it")
    wanted = ", ".join(name for names in fmt.files.values() for name in names)
    raise DataError(f"{root}: not the binary version of {fmt.name} (expected {wanted} here or in "
                    f"{root / fmt.folder})")


def read_records(path: Path, fmt: CifarFormat) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 ``N x 3 x 32 x 32``) and labels (uint8 ``N``) of one binary file."""
    if not path.is_file():
        raise DataError(f"{path}: missing {fmt.name} file")
    raw = np.fromfile(path, dtype=np.uint8)
    record = fmt.label_bytes + PIXELS
    if raw.size == 0 or raw.size % record:
        raise DataError(f"{path}: {raw.size} bytes is not a whole number of {record}-byte {fmt.name} records")
    rows = raw.reshape(-1, record)
    labels = rows[:, fmt.label_offset]
    if int(labels.max()) >= fmt.num_classes:
        raise DataError(f"{path}: label {int(labels.max())} is out of range for {fmt.num_classes} classes")
    return rows[:, fmt.label_bytes:].reshape(-1, 3, 32, 32), labels


def class_names(folder: Path, fmt: CifarFormat) -> tuple[str, ...]:
    """The class names of ``names_file`` (one a line), or numbers when the file is not there."""
    path = folder / fmt.names_file
    if not path.is_file():
        return tuple(str(i) for i in range(fmt.num_classes))
    names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != fmt.num_classes:
        raise DataError(f"{path}: {len(names)} class names, expected {fmt.num_classes}")
    return names


def load_cifar(fmt: CifarFormat, spec: str, root: str, split: str) -> ImageData:
    """The ``split`` ("train" or "test") of the binary ``fmt`` in ``root``, in memory."""
    if split not in fmt.files:
        raise ValueError(f"unknown {fmt.name} split {split!r}; expected one of {sorted(fmt.files)}")
    folder = data_folder(Path(root), fmt)
    parts = [read_records(folder / name, fmt) for name in fmt.files[split]]
    x = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    y = torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.int64))
    return arrays_to_data(x, y, source=spec, split=split, origin=str(folder), class_names=class_names(folder, fmt))


__all__ = ["CIFAR10", "CIFAR100", "CifarFormat", "class_names", "data_folder", "load_cifar", "read_records"]
