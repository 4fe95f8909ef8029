"""The claim of a run folder (``--out``): what a command does after its inputs are checked and before it writes.

In this order, creating nothing until every check has passed:

1. ``--out`` must be a folder that can be made or written to (not a file, not read-only);
2. no other process may hold its lock (``.alva-lock``); the second run exits naming the lock and its process;
3. a folder that holds a finished or partial run (any file) needs ``--resume`` (go on) or ``--overwrite``
   (start again); ``--resume`` refuses a run whose record (``.alva-run.json``: the command, every setting and the
   SHA-256 and size of each model and data set) differs from this one, listing every difference;
4. then the folder is made and locked (a stale lock, left by a killed process, is taken over and reported),
   ``--overwrite`` removes the old contents and says what it removed, temporary files of writes that were killed
   are removed, and the record is written.

The lock is let go when the command ends (:func:`release`), or by the operating system when the process dies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva import distributed
from alva.data import ImageData
from alva.tracking import LOCK_FILE, RunLock, atomic_write_json, remove_orphan_temporaries, tensors_sha256
from alva.tracking.checkpoint import differences
from alva.tracking.files import TEMPORARY
from alva.tracking.lock import acquire, describe, peek
from alva.tracking.verify import DamagedFileError

RECORD_FILE = ".alva-run.json"
RECORD_KIND = "run-record"

# Options that do not change what a run computes, so a resumed run may give them otherwise.
NOT_SETTINGS = frozenset({"handler", "func", "out", "resume", "overwrite", "device", "no_progress", "debug", "threads",
                          "data_root", "trust_code", "skip_weights_check", "list"})
# Settings that a resumed run may change, by command: a GAN, AdvGAN or AT-GAN training may be given more epochs
# (a classifier's may not: its learning rate schedule depends on them), fake-class and convergence training more
# rounds, and the strong evaluation's results do not depend on how its images are cut into batches.
MAY_CHANGE: dict[str, frozenset[str]] = {
    "gan train": frozenset({"epochs"}), "advgan train": frozenset({"epochs"}),
    "atgan finetune": frozenset({"epochs"}), "atgan critic": frozenset({"epochs"}),
    "fakeclass": frozenset({"rounds"}), "converge": frozenset({"rounds"}), "eval": frozenset({"batch_size"}),
}

_held: list[RunLock] = []


class RunFolderError(ValueError):
    """``--out`` cannot be used as asked: a file, not writable, holding a run without --resume or --overwrite,
    or holding a run other than the one resumed."""


def command_name(args: argparse.Namespace) -> str:
    """The command and its action, as typed: ``train``, ``alva generate``, ``atgan critic``."""
    return " ".join(str(v) for k, v in vars(args).items() if (k == "command" or k.endswith("_command")) and v)


def fingerprint(value: Any) -> dict[str, Any] | None:
    """What a resumed run must find unchanged in an input: a model's weights (SHA-256), a data set's samples
    (SHA-256 and size; a streamed set by its size and source), or None for an input not given."""
    if value is None:
        return None
    if isinstance(value, nn.Module):
        state = value.state_dict()
        return {"weights_sha256": tensors_sha256(dict(state)) if state else "no weights"}
    if isinstance(value, ImageData):
        if value.in_memory:
            return fingerprint(value.tensors())
        return {"size": len(value), "source": str(value.source), "split": str(value.split)}
    if isinstance(value, torch.Tensor):
        value = (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in value):
        return {"size": len(value[0]) if value else 0,
                "sha256": tensors_sha256({str(i): t for i, t in enumerate(value)})}
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def run_record(args: argparse.Namespace, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The command, its settings and the fingerprints of its ``inputs`` (name -> model or data), as JSON holds
    them."""
    settings = {k: v for k, v in vars(args).items() if k not in NOT_SETTINGS}
    record = {"command": command_name(args), "settings": settings,
              "inputs": {name: fingerprint(value) for name, value in inputs.items()}}
    return json.loads(json.dumps(record, default=str))


def record_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Every difference between two run records, in words: the command, each setting (as its option), each
    input's fingerprint."""
    changes = []
    if saved.get("command") != now["command"]:
        changes.append(f"command: alva {saved.get('command')} -> alva {now['command']}")
    may_change = MAY_CHANGE.get(now["command"], frozenset())

    def as_options(settings: dict[str, Any]) -> dict[str, Any]:
        return {f"--{key.replace('_', '-')}": value for key, value in settings.items() if key not in may_change}

    changes += differences(as_options(saved.get("settings", {})), as_options(now["settings"]))
    inputs_before, inputs_after = saved.get("inputs", {}), now["inputs"]
    for name in dict.fromkeys([*inputs_before, *inputs_after]):
        old, new = inputs_before.get(name), inputs_after.get(name)
        if old != new:
            label = f"{name} weights" if "weights_sha256" in (old or new or {}) else name
            changes.append(f"{label}: {_describe(old)} -> {_describe(new)}")
    return changes


def _describe(print_: dict[str, Any] | None) -> str:
    if print_ is None:
        return "none"
    parts = [f"{print_['size']} samples" if "size" in print_ else "",
             *(f"{k.replace('weights_', '').replace('sha256', 'SHA-256')} {str(v)[:16]}"
               for k, v in print_.items() if k != "size")]
    return ", ".join(p for p in parts if p)


def _contents(out: Path) -> list[Path]:
    """What a run left in ``out``: not its lock, nor the temporary files of writes it did not finish."""
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if p.name != LOCK_FILE and not TEMPORARY.fullmatch(p.name))


def _check_place(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file, not a folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise RunFolderError(f"--out {out}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out}: {existing} is not writable")


def _listing(paths: list[Path], limit: int = 6) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in paths]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_run(out: Path, args: argparse.Namespace, record: dict[str, Any], implicit_resume: bool) -> None:
    """Refuse a folder holding a run unless --resume (with the same run) or --overwrite was given."""
    contents = _contents(out)
    resume, overwrite = bool(getattr(args, "resume", False)), bool(getattr(args, "overwrite", False))
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: go on with the run in --out, or start "
                             "it again")
    if not contents or overwrite:
        return
    if not (resume or implicit_resume):
        how = "--resume to go on with it, or " if hasattr(args, "resume") else ""
        raise RunFolderError(f"--out {out} holds a finished or partial run ({_listing(contents)}): add {how}"
                             "--overwrite to remove it and start again, or choose another --out")
    saved_path = out / RECORD_FILE
    if not saved_path.exists():
        if implicit_resume:
            return
        raise RunFolderError(f"cannot resume {out}: it holds files ({_listing(contents)}) but no record of the run "
                             f"that wrote them ({RECORD_FILE}); add --overwrite to start again")
    try:
        saved = json.loads(saved_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DamagedFileError(f"{saved_path} is damaged ({err}): delete it and add --overwrite to start the run "
                               "again") from None
    changes = record_differences(saved, record)
    if changes:
        raise RunFolderError(f"cannot resume {out}: {len(changes)} difference(s) from the run it holds: "
                             + "; ".join(changes) + ". Give the same command, or add --overwrite to start again")


def _remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _nested_busy(out: Path) -> str | None:
    for lock in out.rglob(LOCK_FILE):
        if lock.parent != out and (holder := peek(lock.parent)) is not None:
            return f"{lock} is held by {holder}"
    return None


def _holds_here(out: Path) -> bool:
    """Whether ``out`` is the current folder, the home folder or a folder above one of them."""
    resolved = out.resolve()
    return any(place == resolved or resolved in place.parents for place in (Path.cwd().resolve(),
                                                                            Path.home().resolve()))


def claim(args: argparse.Namespace, inputs: Mapping[str, Any] | None = None, *,
          implicit_resume: bool = False) -> Path:
    """Check, lock and prepare the run folder ``args.out`` (see the module's description); returns it.

    ``inputs`` names each model and data set the run depends on (``{"--model": model, "data": (x, y)}``); a
    resumed run must have the same. ``implicit_resume``: a rerun goes on without ``--resume`` (``alva demo``).
    Under ``torchrun`` only the main process claims the folder.

    Raises:
        RunFolderError: (a ``ValueError``) ``--out`` is a file or not writable, holds a run without
            ``--resume``/``--overwrite``, or holds another run than the one resumed (every difference listed).
        RunFolderBusy: (a ``RuntimeError``) another process holds the folder's lock.
    """
    out = Path(args.out)
    if not distributed.is_main():
        return out
    command = command_name(args)
    record = {**run_record(args, inputs or {}), "kind": RECORD_KIND}
    _check_place(out)
    if out.is_dir() and peek(out) is not None:
        acquire(out, command)  # raises, naming the lock and its holder
    _check_run(out, args, record, implicit_resume)
    overwrite = bool(getattr(args, "overwrite", False))
    if overwrite and out.is_dir() and _holds_here(out):
        raise RunFolderError(f"--overwrite {out}: it holds the current folder or the home folder; choose a run "
                             "folder of its own")
    if overwrite and (busy := _nested_busy(out)):
        raise RunFolderError(f"--overwrite {out}: a run inside it is still going ({busy})")
    out.mkdir(parents=True, exist_ok=True)
    lock = acquire(out, command)
    _held.append(lock)
    if lock.stale is not None:
        print(f"alva {command}: {lock.path} was left by {describe(lock.stale)}, which is no longer "
              "running: taken over", file=sys.stderr)
    _check_run(out, args, record, implicit_resume)  # again, under the lock
    if overwrite and (old := _contents(out)):
        _remove(old)
        print(f"alva {command}: --overwrite removed {len(old)} entries from {out}: {_listing(old, 12)}",
              file=sys.stderr)
    orphans = remove_orphan_temporaries(out)
    if orphans:
        print(f"alva {command}: removed {len(orphans)} temporary file(s) of writes a stopped run left unfinished",
              file=sys.stderr)
    saved = out / RECORD_FILE
    if not saved.exists() or json.loads(saved.read_text()) != record:  # a resume of the same run changes nothing
        atomic_write_json(saved, {k: v for k, v in record.items() if k != "kind"}, kind=RECORD_KIND)
    return out


def release() -> None:
    """Let go of every run folder this process claimed (what ``alva`` does when a command ends)."""
    while _held:
        _held.pop().release()


__all__ = ["MAY_CHANGE", "RECORD_FILE", "RunFolderError", "claim", "command_name", "fingerprint", "record_differences",
           "release", "run_record"]
