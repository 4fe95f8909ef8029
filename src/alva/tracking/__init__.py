"""Tracking: atomic files, checkpoints that never unpickle, files checked when read, run-folder locks, and
metrics in JSONL and TensorBoard."""

from alva.tracking.checkpoint import load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes, atomic_write_json, json_kind, remove_orphan_temporaries
from alva.tracking.lock import LOCK_FILE, RunFolderBusy, RunLock
from alva.tracking.logger import MetricsLogger, read_metrics
from alva.tracking.verify import DamagedFileError, encode_verified, read_verified, tensors_sha256

__all__ = ["LOCK_FILE", "DamagedFileError", "MetricsLogger", "RunFolderBusy", "RunLock", "atomic_write_bytes",
           "atomic_write_json", "encode_verified", "json_kind", "load_checkpoint", "read_metrics", "read_verified",
           "remove_orphan_temporaries", "save_checkpoint", "tensors_sha256"]
