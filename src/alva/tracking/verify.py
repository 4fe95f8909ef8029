"""Files that can be checked when read: safetensors files that carry the SHA-256 of their tensors.

A truncated or altered file is a :class:`DamagedFileError` naming the file and what to do, never a raw error of
the safetensors reader nor, worse, numbers that load without complaint.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

SHA256_KEY = "alva_sha256"


class DamagedFileError(ValueError):
    """A file alva wrote that does not read back as written: truncated, altered or not of its kind."""


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over the names, dtypes, shapes and raw bytes of ``tensors``, in name order: the fingerprint of a
    set of weights or of a saved state, independent of how a file lays them out."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encode_verified(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None) -> bytes:
    """The safetensors bytes of ``tensors`` with ``metadata`` and the SHA-256 of the tensors in the header."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}  # no storage shared
    return save_safetensors(tensors, metadata={**(metadata or {}), SHA256_KEY: tensors_sha256(tensors)})


def damaged(path: str | os.PathLike, why: str, redo: str) -> DamagedFileError:
    """The error for a damaged file: which file, what is wrong, and what to do (``redo`` follows "delete it to")."""
    return DamagedFileError(f"{path} is damaged ({why}): delete it to {redo}")


def read_verified(path: str | os.PathLike, redo: str = "make that part again"
                  ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and header metadata of a safetensors file, checked against the SHA-256 in its header (a file
    written without one is read unchecked).

    Raises:
        FileNotFoundError: There is no such file.
        DamagedFileError: The file is truncated, not safetensors, or its tensors differ from the SHA-256 they were
            written with; the message says to delete it to ``redo``.
    """
    raw = Path(path).read_bytes()
    try:
        tensors = load_safetensors(raw)
        header_len = int.from_bytes(raw[:8], "little")
        metadata = json.loads(raw[8:8 + header_len]).get("__metadata__") or {}
    except Exception as err:  # safetensors raises its own error type for a truncated or foreign file
        raise damaged(path, f"not a complete safetensors file: {err}", redo) from None
    expected = metadata.get(SHA256_KEY)
    if expected is not None and tensors_sha256(tensors) != expected:
        raise damaged(path, "its tensors do not match the SHA-256 they were written with", redo)
    return tensors, metadata
