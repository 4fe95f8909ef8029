"""The zoo: classifiers and generators with shipped weights (safetensors) and a JSON card each.

A card says what the weights are and how to make them again: architecture, normalisation,
the exact command that trained them, the seed, the SHA-256 of the training data and the clean
test accuracy, and ``weights_sha256``, the SHA-256 of the weights, which loading checks. Its ``task`` says how
to read the outputs: ``"multiclass"`` (argmax of the logits; the default for cards without the field) or
``"multilabel"`` (one sigmoid per label, a label is present when its probability exceeds the card's
``decision_threshold``). ``load`` never unpickles: weights come from safetensors alone. Generators (cards with
``"kind": "generator"``) load with :func:`alva.models.load_generator` instead.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors
from torch import nn

from alva.models.cards import build_from_card, check_card
from alva.models.factory import ModelLoadError, load_state
from alva.models.wrapper import Normalized
from alva.tracking.files import atomic_write_bytes, atomic_write_json
from alva.tracking.verify import DamagedFileError, tensors_sha256

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
TASKS = ("multiclass", "multilabel")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")


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
    """The part of a card that rebuilds ``model``, a classifier made by :func:`alva.models.create` or loaded by
    :func:`alva.models.load` (from the zoo, a weights file or the user's own ``FILE.py:FUNCTION``)."""
    if not hasattr(model, "spec"):
        raise ValueError("only models made by alva.models.create or loaded by alva.models.load can be saved with "
                         "a card")
    normalized = cast(Normalized, model)
    return {**normalized.spec, "mean": normalized.mean.flatten().tolist(), "std": normalized.std.flatten().tolist()}


def save(model: nn.Module, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``path`` (``.safetensors``, the card embedded in its header) and the card beside it (``.json``).

    Nothing is written when the card could not rebuild the model (:func:`alva.models.cards.check_card`: an
    unknown architecture, a factory that does not import, weights of other shapes) or has an unknown ``task``;
    the error is a :class:`~alva.models.factory.ModelLoadError` (a ``ValueError``).
    """
    if card.get("task", "multiclass") not in TASKS:
        raise ModelLoadError(f"card task {card['task']!r} is not one of {TASKS}")
    check_card(card, model, str(path))
    return write_weights(model, card, path)


def write_weights(module: nn.Module, card: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``module``'s weights to ``path`` (``.safetensors``, ``card`` embedded in its header) and the card
    beside it (``.json``), both atomically: how every model, generator and attack network of alva is stored.

    The card written gets ``weights_sha256`` (:func:`alva.tracking.tensors_sha256` of the weights), which
    :func:`check_weights` compares when they are loaded."""
    path = Path(path).with_suffix(".safetensors")
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    card = {**card, "weights_sha256": tensors_sha256(tensors)}
    atomic_write_bytes(path, save_safetensors(tensors, metadata={"alva_card": json.dumps(card)}))
    atomic_write_json(path.with_suffix(".json"), card)
    return path


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors weights file, on the CPU; a clear error for anything else (never unpickles)."""
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # safetensors raises its own error type for a file that is not safetensors
        raise ModelLoadError(f"{path} is not a valid safetensors file ({err}); alva never unpickles weights") from err


def check_weights(path: str | os.PathLike, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    """Refuse weights whose SHA-256 is not the ``weights_sha256`` of their card (a card without one, written
    before cards held it, is not checked).

    Raises:
        DamagedFileError: (a ``ValueError``) naming the file, both fingerprints and what to do.
    """
    expected = info.get("weights_sha256")
    if expected is None:
        return
    found = tensors_sha256(tensors)
    if found != expected:
        raise DamagedFileError(
            f"{path} is damaged: its weights have SHA-256 {found[:16]}..., its card says {expected[:16]}...; "
            "delete it and get or train the model again (if you changed the weights on purpose, load them with "
            "verify=False, --skip-weights-check on the command line)")


def refuse_pickle(path: str | os.PathLike) -> None:
    """Raise a :class:`~alva.models.factory.ModelLoadError` for a pickled weights file, which alva never opens."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        target = Path(path).with_name(f"{Path(path).stem}-state.safetensors")  # never over a file beside it
        raise ModelLoadError(
            f"{path} is a pickle, which alva never loads (unpickling runs code). Convert it to safetensors once, "
            f"in Python you trust: safetensors.torch.save_file(torch.load('{path}', weights_only=True), "
            f"'{target}') (for a checkpoint dict, save its state dict entry), then give {target.name} as the "
            "weights of your FILE.py:FUNCTION model"
        )


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The weights file for a zoo name, a ``.safetensors`` path, or a run folder holding ``model.safetensors``.

    Raises:
        ModelLoadError: For a pickle (``.pt``, ``.pth``, ``.ckpt``, ...), which alva never loads.
        FileNotFoundError: For anything else that names no weights; the message lists close zoo names.
    """
    text = str(name_or_path)
    refuse_pickle(text)
    zoo_file = ZOO_DIR / f"{text}.safetensors"
    if not text.endswith(".safetensors") and zoo_file.exists():
        return zoo_file
    path = Path(text)
    if path.is_dir():
        if not (path / "model.safetensors").exists():
            raise FileNotFoundError(f"no model {text!r}: the folder holds no model.safetensors (a run folder of "
                                    "alva train holds one)")
        return path / "model.safetensors"
    if not path.suffix and path.with_suffix(".safetensors").exists():
        path = path.with_suffix(".safetensors")
    if path.suffix != ".safetensors" or not path.exists():
        close = difflib.get_close_matches(text, available(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise FileNotFoundError(
            f"no model {text!r}: not in the zoo ({', '.join(available()) or 'empty'}), not a .safetensors file, "
            f"a run folder or FILE.py:FUNCTION{hint}"
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


def load(name_or_path: str | os.PathLike, *, device: str | torch.device = "cpu", verify: bool = True) -> nn.Module:
    """A ready classifier in eval mode from the zoo (``mnist/cnn-small``) or a user's weights file or run folder.

    The returned model carries its card as ``model.card``. With ``verify`` (the default) the weights must have
    the SHA-256 their card records (:func:`check_weights`).
    """
    path = resolve(name_or_path)
    info = card(path)
    if info.get("kind", "classifier") != "classifier":
        raise ModelLoadError(f"{name_or_path} is a {info['kind']}, not a classifier: load it with "
                         "alva.models.load_generator")
    model = build_from_card(info, str(path))
    tensors = read_weights(path)
    if verify:
        check_weights(path, info, tensors)
    load_state(model, tensors, f"weights {path}")
    model.card = info
    return model.to(device).eval()
