"""Checkpoints as one safetensors file: tensors stored as tensors, everything else as JSON in its header.

Loading never unpickles, so a checkpoint from anyone is safe to open.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from alva.tracking.files import atomic_write_bytes
from alva.tracking.verify import encode_verified, read_verified

_TENSOR = "__tensor__"
_TUPLE = "__tuple__"
_INTKEYS = "__intkeys__"


def flatten_state(obj: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested structure into a JSON skeleton and a flat ``{key: tensor}`` dict.

    Dicts with integer keys (optimizer states) and tuples survive the round trip.
    """
    tensors: dict[str, torch.Tensor] = {}

    def walk(node: Any, path: str) -> Any:
        if isinstance(node, torch.Tensor):
            tensors[path] = node.detach().cpu().contiguous().clone()
            return {_TENSOR: path}
        if isinstance(node, dict):
            int_keys = bool(node) and all(isinstance(k, int) for k in node)
            if not int_keys and not all(isinstance(k, str) for k in node):
                raise TypeError(f"{path or 'state'}: keys must be all str or all int")
            out = {str(k): walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
            return {_INTKEYS: out} if int_keys else out
        if isinstance(node, (list, tuple)):
            items = [walk(v, f"{path}.{i}") for i, v in enumerate(node)]
            return {_TUPLE: items} if isinstance(node, tuple) else items
        if node is None or isinstance(node, (bool, int, float, str)):
            return node
        raise TypeError(f"{path or 'state'}: cannot store a {type(node).__name__} in a checkpoint")

    return walk(obj, prefix), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {_TENSOR}:
            return tensors[skeleton[_TENSOR]]
        if set(skeleton) == {_TUPLE}:
            return tuple(unflatten_state(v, tensors) for v in skeleton[_TUPLE])
        if set(skeleton) == {_INTKEYS}:
            return {int(k): unflatten_state(v, tensors) for k, v in skeleton[_INTKEYS].items()}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (nested dicts of tensors and plain values) atomically to ``path``, with the SHA-256 of its
    tensors, which :func:`load_checkpoint` checks."""
    skeleton, tensors = flatten_state(state)
    atomic_write_bytes(path, encode_verified(tensors, {"alva_state": json.dumps(skeleton)}))


def load_checkpoint(path: str | os.PathLike, redo: str = "start that part of the run again") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (no unpickling).

    Raises:
        FileNotFoundError: There is no such file.
        DamagedFileError: (a ``ValueError``) the file is truncated or altered; the message names it and says to
            delete it to ``redo``.
        ValueError: The file is a safetensors file, but not an alva checkpoint.
    """
    tensors, metadata = read_verified(path, redo)
    if "alva_state" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not an alva checkpoint (no 'alva_state' metadata)")
    return unflatten_state(json.loads(metadata["alva_state"]), tensors)


def differences(saved: dict[str, Any], now: dict[str, Any], may_change: tuple[str, ...] = ()) -> list[str]:
    """Each key other than ``may_change`` whose value differs between ``saved`` and ``now``, as ``key: saved ->
    now`` (a key missing on one side shows as None)."""
    keys = [k for k in dict.fromkeys([*saved, *now]) if k not in may_change and k != "kind"]
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in keys if saved.get(k) != now.get(k)]


def check_same_settings(where: str | os.PathLike, saved: dict[str, Any], now: dict[str, Any],
                        may_change: tuple[str, ...] = ()) -> None:
    """Refuse to resume the run at ``where`` when a setting other than ``may_change`` differs from the saved one:
    a :class:`ValueError` that lists every change as ``key: saved -> now``."""
    refuse_changes(where, differences(saved, now, may_change))


def refuse_changes(where: str | os.PathLike, changed: list[str]) -> None:
    """Raise a :class:`ValueError` listing every change of :func:`differences`, if there is any."""
    if changed:
        raise ValueError(f"cannot resume {where}: settings differ from the saved run ({len(changed)} "
                         f"difference(s)): " + "; ".join(changed))
