"""Tracking: atomic files, checkpoints that never unpickle, and metrics in JSONL and TensorBoard."""

from alva.tracking.checkpoint import load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes, atomic_write_json, json_kind
from alva.tracking.logger import MetricsLogger, read_metrics

__all__ = ["MetricsLogger", "atomic_write_bytes", "atomic_write_json", "json_kind", "load_checkpoint", "read_metrics",
           "save_checkpoint"]
