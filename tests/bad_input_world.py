"""What the tables of bad input work on: tiny data sets (a good one and broken ones), the user's broken models, a
file, a truncated weights file and a model whose card says multi-label; and a snapshot of a folder, to show that
nothing was written or changed."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np

import alva.models

USER_MODELS = '''
import torch
from torch import nn


class Linear(nn.Module):
    def __init__(self, scale=1.0, shape="rows"):
        super().__init__()
        self.lin, self.scale, self.shape = nn.Linear(784, 10), scale, shape

    def forward(self, x):
        logits = self.lin(x.flatten(1)) * self.scale
        return {"rows": logits, "flat": logits[:, 0], "extra": logits[..., None], "pair": (logits, logits)}[self.shape]


def nan_model():
    return Linear(float("nan"))


def inf_model():
    return Linear(float("inf"))


def flat():
    return Linear(shape="flat")


def extra():
    return Linear(shape="extra")


def pair():
    return Linear(shape="pair")
'''


def write_split_files(root: Path, name: str, x: np.ndarray, y: np.ndarray) -> str:
    for split in ("train", "test"):
        np.savez(root / f"{name}-{split}.npz", x=x, y=y)
    return str(root / f"{name}-{{split}}.npz")


def make_world(root: Path) -> dict[str, str]:
    """Write the world under ``root``; the names the tables of bad input use in braces."""
    x = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    y = np.arange(20) % 10
    nan_x = x.copy()
    nan_x[3, 0, 5, 5] = np.nan
    names = {
        "data": write_split_files(root, "good", x, y),
        "data255": write_split_files(root, "x255", x * 255, y),
        "datanan": write_split_files(root, "xnan", nan_x, y),
        "data11": write_split_files(root, "y11", x, np.arange(20) % 11),
        "dataneg": write_split_files(root, "yneg", x, y - 1),
        "data5d": write_split_files(root, "x5d", x[:, None], y),
        "datargb": write_split_files(root, "rgb", np.repeat(x, 3, axis=1), y),
        "datashort": write_split_files(root, "short", x, y[:10]),
        "datafloaty": write_split_files(root, "yfloat", x, y + 0.5),
    }
    (root / "models.py").write_text(USER_MODELS)
    (root / "a-file").write_text("not a folder")
    (root / "weights.pt").write_bytes(b"\x80\x04not really a pickle")
    model = alva.models.load("mnist/cnn-small")
    alva.models.save(model, model.card, root / "weights.safetensors")  # beside weights.pt: never loaded for it
    alva.models.save(model, {**model.card, "task": "multilabel"}, root / "multilabel.safetensors")
    (root / "truncated.safetensors").write_bytes((root / "weights.safetensors").read_bytes()[:300])
    (root / "truncated.json").write_text((root / "weights.json").read_text())
    return {**names, "truncated": str(root / "truncated.safetensors"), "root": str(root),
            "models": str(root / "models.py"), "file": str(root / "a-file"),
            "pt": str(root / "weights.pt"), "multilabel": str(root / "multilabel.safetensors")}


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``root``: size, modification time and SHA-256 of its bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        state[str(path.relative_to(root))] = (path.stat().st_size if path.is_file() else 0, path.stat().st_mtime_ns,
                                              digest)
    return state


def user_module(path: str) -> ModuleType:
    """The user's model file at ``path``, imported as the user's code would be."""
    spec = importlib.util.spec_from_file_location("bad_input_user_models", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
