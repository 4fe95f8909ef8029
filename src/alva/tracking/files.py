"""Atomic file writes: a reader (or a resumed run) sees the old file or the new one, never half of one."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from alva.tracking.lock import LOCK_FILE

# what atomic_write_bytes names its temporary files: .<name>.<16 hex digits>.tmp
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp, which makes the file 0600 (unreadable to the group and others after the replace):
    # mode 0666 with O_EXCL, so the umask applies as it does for a plain open().
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, *, kind: str | None = None) -> None:
    """Write ``obj`` as indented JSON, atomically.

    ``kind`` names what the file holds (``"attack-summary"``, ``"strong-eval"``, ...); it is stored as the
    object's first key ``"kind"`` so that readers (``alva report``) need not guess from the other keys.
    """
    if kind is not None:
        if not isinstance(obj, dict):
            raise TypeError(f"a JSON file with a kind must hold an object, got {type(obj).__name__}")
        obj = {"kind": kind, **{k: v for k, v in obj.items() if k != "kind"}}
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def json_kind(obj: Any) -> str | None:
    """The ``"kind"`` that :func:`atomic_write_json` stored in ``obj``, or None."""
    return obj.get("kind") if isinstance(obj, dict) else None


def remove_orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writes killed before their ``os.replace`` left in ``folder`` and its
    sub-folders (not in a sub-folder that holds a run of its own, with its own lock); returns them.

    Call it only while holding the folder's lock: a running write's temporary file looks the same."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(str(folder)):
        if Path(root) != Path(folder) and LOCK_FILE in files:
            dirs.clear()
            continue
        for name in files:
            if TEMPORARY.fullmatch(name):
                path = Path(root) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return sorted(removed)
