"""Helpers of the run-folder and fault tests: tiny runs of train, eval and alva generate, snapshots of folders,
and an in-process kill."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from alva.tracking import read_metrics, read_verified

TEMPORARY = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")

TRAIN = ["train", "--model", "softmax", "--epochs", "3", "--train-size", "60", "--test-size", "30", "--batch-size",
         "20", "--no-progress"]
EVAL = ["eval", "--model", "mnist/softmax", "--eps", "0.05", "--n", "12", "--batch-size", "3", "--attacks",
        "apgd-ce,apgd-t", "--version", "quick", "--no-sanity", "--no-progress", "--threads", "1"]
GENERATE = ["alva", "generate", "--n", "40", "--chunk-size", "4", "--steps", "1", "--no-progress"]


class SimulatedKill(BaseException):
    """Stands for SIGKILL in-process: no ``except Exception`` stops it, so the run ends where it is."""


def snapshot(folder: Path, *, times: bool = True) -> dict[str, str]:
    """Every file under ``folder`` with the SHA-256 of its bytes and (with ``times``) its modification time."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            + (f" {p.stat().st_mtime_ns}" if times else "") for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    """The temporary files of unfinished atomic writes under ``folder``."""
    return sorted(str(p) for p in folder.rglob("*") if TEMPORARY.fullmatch(p.name))


def tensors(path: Path) -> dict:
    """The tensors of a safetensors file, as lists (for an exact comparison)."""
    return {k: v.tolist() for k, v in read_verified(path)[0].items()}


def train_result(out: Path) -> dict:
    """What an unbroken training run and a killed and resumed one must share bit for bit."""
    card = json.loads((out / "model.json").read_text())
    drop = {"train_time_s", "command"}
    return {"weights": tensors(out / "model.safetensors"),
            "card": {k: v for k, v in card.items() if k not in drop},
            "metrics": [{k: v for k, v in r.items() if k != "time_s"} for r in read_metrics(out / "metrics.jsonl")]}


def eval_result(out: Path) -> dict:
    """The per-sample outcome and table of a strong evaluation (seconds left out)."""
    result = json.loads((out / "result.json").read_text())
    table = [{k: v for k, v in row.items() if k != "seconds"} for row in result.get("table", [])]
    return {"state": tensors(out / "state.safetensors"), "table": table,
            **{k: result[k] for k in ("robust_acc", "clean_acc", "broken_by", "n")}}


def generate_result(out: Path) -> dict:
    """The data set and summary of an ALVA generation."""
    return {"dataset": tensors(out / "dataset.safetensors"),
            "summary": json.loads((out / "summary.json").read_text())}
