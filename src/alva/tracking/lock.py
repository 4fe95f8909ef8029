"""The lock of a run folder: one process at a time writes into it.

The lock is ``.alva-lock`` in the folder, held with ``flock`` (``msvcrt.locking`` on Windows) for as long as
the process runs (the operating system lets go of it when the process dies, however it dies) and holding the
process id, the host and the command that took it. A lock file that nobody holds is stale: the process that
wrote it was killed before it could remove it; the next run takes it over and says so.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_FILE = ".alva-lock"

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        """Lock the open file ``fd`` (its first byte) without waiting; False when another process holds it."""
        os.lseek(fd, 0, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        """Lock the open file ``fd`` without waiting; False when another process holds it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class RunFolderBusy(RuntimeError):
    """Another process holds the lock of the run folder."""


@dataclass
class RunLock:
    """A held lock: the open file (closing it lets go) and, when the lock was stale, what its file said."""

    path: Path
    fd: int
    stale: dict[str, Any] | None

    def release(self) -> None:
        """Remove the lock file and let go of it (a no-op once released)."""
        if self.fd < 0:
            return
        try:
            if _same_file(self.path, self.fd):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = -1


def _same_file(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode(errors="replace")
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        return {"pid": None, "command": "unknown (unreadable lock file)"} if text else None
    return found if isinstance(found, dict) else None


def describe(holder: dict[str, Any] | None) -> str:
    """The holder of a lock in words: process id, host, command and since when."""
    if not holder:
        return "an unknown process"
    host = f" on {holder['host']}" if holder.get("host") and holder["host"] != socket.gethostname() else ""
    return (f"process {holder.get('pid')}{host} (alva {holder.get('command', '?')}, started "
            f"{holder.get('since', '?')})")


def peek(folder: str | os.PathLike) -> str | None:
    """Who holds the lock of ``folder`` now (in words), or None when nobody does; creates nothing."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        return None if _try_lock(fd) else describe(_holder(fd))
    finally:
        os.close(fd)  # closing lets go of a lock taken here


def acquire(folder: str | os.PathLike, command: str) -> RunLock:
    """Take the lock of ``folder`` (which must exist) for this process.

    Raises:
        RunFolderBusy: Another process holds it; the message names the lock file and that process.
    """
    path = Path(folder) / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        if not _try_lock(fd):
            holder = _holder(fd)
            os.close(fd)
            raise RunFolderBusy(f"{path} is held by {describe(holder)}: another run is writing into {folder}; "
                                "wait for it to finish or choose another --out") from None
        if not _same_file(path, fd):  # the holder removed it between our open and our lock: take the new one
            os.close(fd)
            continue
        stale = _holder(fd)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                  "since": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(record).encode())
        return RunLock(path, fd, stale)
