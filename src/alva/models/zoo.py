"""The zoo: classifiers and generators with shipped weights (safetensors) and a JSON card each.

A card says what the weights are and how to make them again: architecture, normalisation,
the exact command that trained them, the seed, the SHA-256 of the training data and the clean
test accuracy. Its ``task`` says how to read the outputs: ``"multiclass"`` (argmax of the logits; the
default for cards without the field) or ``"multilabel"`` (one sigmoid per label, a label is present when
its probability exceeds the card's ``decision_threshold``). ``load`` never unpickles: weights come from
safetensors alone. Generators (cards with ``"kind": "generator"``) load with
:func:`alva.models.load_generator` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from alva.models.classifiers import create
from alva.tracking.files import atomic_write_bytes, atomic_write_json

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
CARD_KEYS = ("architecture", "num_classes", "in_shape", "mean", "std")
TASKS = ("multiclass", "multilabel")


def available() -> list[str]:
    """Names of the shipped models, such as ``mnist/cnn-small`` (classifiers and generators)."""
    return sorted(str(p.relative_to(ZOO_DIR).with_suffix("")) for p in ZOO_DIR.rglob("*.safetensors"))


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 over the raw bytes of the given tensors: a fingerprint of a training set."""
    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def architecture_card(model: nn.Module) -> dict[str, Any]:
    """The part of a card that rebuilds ``model``, a classifier made by :func:`alva.models.create`."""
    if not hasattr(model, "spec"):
        raise ValueError("only models made by alva.models.create (or loaded from the zoo) can be saved with a card")
    return {**model.spec, "mean": model.mean.flatten().tolist(), "std": model.std.flatten().tolist()}


def save(model: nn.Module, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``path`` (``.safetensors``, the card embedded in its header) and the card beside it (``.json``)."""
    missing = [k for k in CARD_KEYS if k not in card]
    if missing:
        raise ValueError(f"card lacks {missing}")
    if card.get("task", "multiclass") not in TASKS:
        raise ValueError(f"card task {card['task']!r} is not one of {TASKS}")
    return write_weights(model, card, path)


def write_weights(module: nn.Module, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``module``'s weights to ``path`` (``.safetensors``, ``card`` embedded in its header) and the card
    beside it (``.json``), both atomically: how every model, generator and attack network of alva is stored."""
    path = Path(path).with_suffix(".safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save_safetensors(tensors, metadata={"alva_card": json.dumps(card)}))
    atomic_write_json(path.with_suffix(".json"), card)
    return path


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors weights file, on the CPU; a clear error for anything else (never unpickles)."""
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error type for a file that is not safetensors
        raise ValueError(f"{path} is not a valid safetensors file ({err}); alva never unpickles weights") from err


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The weights file for a zoo name, a ``.safetensors`` path, or a run folder holding ``model.safetensors``."""
    text = str(name_or_path)
    zoo_file = ZOO_DIR / f"{text}.safetensors"
    if not text.endswith(".safetensors") and zoo_file.exists():
        return zoo_file
    path = Path(text)
    if path.is_dir():
        path = path / "model.safetensors"
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    if not path.exists():
        raise FileNotFoundError(
            f"no model {text!r}: not in the zoo ({', '.join(available()) or 'empty'}) and no file {path}"
        )
    return path


def card(name_or_path: str | os.PathLike) -> dict[str, Any]:
    """The card of a model: the JSON beside its weights, else the copy in the weights' header.

    A card without ``task`` (one written before multi-label models) gets ``"task": "multiclass"``.
    """
    info = stored_card(resolve(name_or_path))
    return {**info, "task": info.get("task", "multiclass")}


def stored_card(path: Path) -> dict[str, Any]:
    """The card of a weights file: the ``.json`` beside it, else the ``alva_card`` of its safetensors header."""
    beside = path.with_suffix(".json")
    if beside.exists():
        return json.loads(beside.read_text())
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as err:
        raise ValueError(f"{path} is not a valid safetensors file ({err}); alva never unpickles weights") from err
    if "alva_card" not in metadata:
        raise ValueError(f"{path} has no card: neither {beside.name} nor 'alva_card' in its header")
    return json.loads(metadata["alva_card"])


_stored_card = stored_card


def load(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """A ready classifier in eval mode from the zoo (``mnist/cnn-small``) or a user's weights file or run folder.

    The returned model carries its card as ``model.card``.
    """
    path = resolve(name_or_path)
    info = card(path)
    if info.get("kind", "classifier") != "classifier":
        raise ValueError(f"{name_or_path} is a {info['kind']}, not a classifier: load it with "
                         "alva.models.load_generator")
    model = create(info["architecture"], num_classes=info["num_classes"], in_shape=tuple(info["in_shape"]),
                   mean=tuple(info["mean"]), std=tuple(info["std"]))
    model.load_state_dict(read_weights(path), strict=True)
    model.card = info
    return model.to(device).eval()
