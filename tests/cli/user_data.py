"""A user's own small 3 x 32 x 32 data set, written as CIFAR-10 binaries, as .npz files and as an image folder
(the same images in the same order in all three), for the command-line tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

TESTS = Path(__file__).resolve().parents[1]
USER_MODELS = TESTS / "models" / "user_models.py"
NAMES = [f"c{k}" for k in range(10)]


def _data_files():
    """The writers of tests/data/data_files.py (a plain module of that folder, loaded by its path)."""
    spec = importlib.util.spec_from_file_location("alva_test_data_files", TESTS / "data" / "data_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def colour_images(n: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """``n`` uint8 images of 10 classes, sorted by class: a colour of the class plus noise (learnable)."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.randint(0, 256, (10, 3), generator=torch.Generator().manual_seed(1234))
    labels = torch.arange(n) * 10 // n
    noise = torch.randint(-60, 61, (n, 3, 32, 32), generator=g)
    images = (palette[labels][:, :, None, None] + noise).clamp(0, 255).to(torch.uint8)
    return images, labels.tolist()


def write_user_data(root: Path, n_train: int = 200, n_test: int = 100) -> dict[str, str]:
    """The data set under ``root`` in three forms; returns the ``--data`` spec of each."""
    files = _data_files()
    train, test = colour_images(n_train, seed=1), colour_images(n_test, seed=2)
    files.write_cifar10(root / "cifar", train, test, NAMES)
    for split, (x, y) in (("train", train), ("test", test)):
        np.savez(root / f"rgb-{split}.npz", x=x.numpy(), y=np.array(y, dtype=np.int64))
        files.write_folder(root / "folder" / split, x, y, NAMES)
    return {"cifar": f"cifar10:{root / 'cifar'}", "npz": str(root / "rgb-{split}.npz"),
            "folder": str(root / "folder")}
