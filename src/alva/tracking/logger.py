"""Run metrics as JSON lines (one record per step) and, beside them, TensorBoard scalars."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from alva.tracking.files import atomic_write_bytes


def _scalars(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested record, keyed ``a/b/c`` as TensorBoard groups them."""
    out: dict[str, float] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_scalars(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file (a torn last line, from a killed run, is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    """Appends records to ``out/metrics.jsonl`` and writes their numbers to TensorBoard under ``out/tb``.

    ``resume_step`` drops records at or after that step, so a resumed run does not log an epoch twice.
    """

    def __init__(self, out: str | os.PathLike, *, resume_step: int | None = None, tensorboard: bool = True) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.path = self.out / "metrics.jsonl"
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        else:
            kept = [r for r in read_metrics(self.path) if r.get("step", -1) < resume_step]
            atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n" for r in kept).encode())
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is a dependency, but a missing one must not stop a run
                pass
            else:
                self.writer = SummaryWriter(log_dir=str(self.out / "tb"), purge_step=resume_step)

    def log(self, step: int, record: dict[str, Any]) -> None:
        record = {"step": int(step), **record}
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self.writer is not None:
            for name, value in _scalars(record).items():
                if name != "step":
                    self.writer.add_scalar(name, value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
