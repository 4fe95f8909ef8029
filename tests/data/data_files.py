"""Small data sets written to disk in every layout :func:`alva.data.load` reads, for the tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def random_uint8(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    """``n`` random uint8 images ``C x H x W``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.int64).to(torch.uint8)


def save_image(image: torch.Tensor, path: Path) -> None:
    """A uint8 ``C x H x W`` image written in the format of ``path``'s suffix (grey for C = 1)."""
    pixels = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels, mode="L" if image.shape[0] == 1 else "RGB").save(path)


def write_folder(root: Path, images: torch.Tensor, labels: list[int], classes: list[str], suffix: str = ".png"
                 ) -> list[Path]:
    """An image folder: ``root/classes[label]/{i:04d}{suffix}`` for image ``i``; returns the files in order."""
    paths = []
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = root / classes[label] / f"{i:04d}{suffix}"
        save_image(image, path)
        paths.append(path)
    return paths


def folder_order(labels: list[int]) -> torch.Tensor:
    """The order in which an image folder written by :func:`write_folder` is read: its files are named by distinct
    numbers, so in the order they were written."""
    return torch.arange(len(labels))


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """An ``.npz`` of ``arrays``."""
    np.savez(path, **arrays)
    return path


def cifar_records(images: torch.Tensor, labels: list[int], coarse: list[int] | None = None) -> bytes:
    """CIFAR binary records: the label byte(s) (coarse first for CIFAR-100), then R, G, B planes of 32 x 32."""
    rows = []
    for i, image in enumerate(images):
        head = [labels[i]] if coarse is None else [coarse[i], labels[i]]
        rows.append(bytes(head) + image.contiguous().numpy().tobytes())
    return b"".join(rows)


def write_cifar10(root: Path, train: tuple[torch.Tensor, list[int]], test: tuple[torch.Tensor, list[int]],
                  names: list[str]) -> Path:
    """A ``cifar-10-batches-bin`` folder: the training set over five batch files, the test set, class names."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    x, y = train
    parts = np.array_split(np.arange(len(x)), 5)
    for number, part in enumerate(parts, start=1):
        (folder / f"data_batch_{number}.bin").write_bytes(cifar_records(x[part], [y[i] for i in part]))
    (folder / "test_batch.bin").write_bytes(cifar_records(*test))
    (folder / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    return folder
