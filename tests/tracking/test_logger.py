"""MetricsLogger (JSONL and TensorBoard) and read_metrics."""

from __future__ import annotations

import json
import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from alva.tracking import MetricsLogger, read_metrics


def _records(n: int, start: int = 1) -> list[tuple[int, dict]]:
    return [(s, {"epoch": s, "train": {"loss": 1.0 / s, "acc": 0.5 + s / 100}, "lr": 0.001, "tag": "run"})
            for s in range(start, start + n)]


def test_writes_one_json_line_per_record(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        for step, record in _records(3):
            logger.log(step, record)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    parsed = [json.loads(line) for line in lines]
    assert parsed == read_metrics(tmp_path / "metrics.jsonl")
    for (step, record), got in zip(_records(3), parsed, strict=True):
        assert got == {"step": step, **record}
    assert not (tmp_path / "tb").exists()


def test_writes_tensorboard_scalars_under_tb(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step, record in _records(3):
            logger.log(step, record)
        logger.log(4, {"train": {"loss": float("nan")}, "ok": True})
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/acc", "lr", "epoch"} <= tags
    assert "step" not in tags and "tag" not in tags and "ok" not in tags
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3]  # the NaN is in the JSONL, not in TensorBoard
    assert [e.value for e in loss] == pytest.approx([1.0, 0.5, 1 / 3])
    assert math.isnan(read_metrics(tmp_path / "metrics.jsonl")[-1]["train"]["loss"])


def test_a_new_logger_starts_a_new_file(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        for step, record in _records(3):
            logger.log(step, record)
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(1, {"fresh": True})
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "fresh": True}]


def test_resume_step_drops_records_at_or_after_it(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        for step, record in _records(4):
            logger.log(step, record)
    with MetricsLogger(tmp_path, resume_step=3) as logger:
        assert [r["step"] for r in read_metrics(logger.path)] == [1, 2]
        logger.log(3, {"again": 3})
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[2] == {"step": 3, "again": 3}
    assert records[:2] == [{"step": s, **r} for s, r in _records(2)]
    # TensorBoard forgets the dropped steps too: one value per step, the new one at step 3.
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [1, 2]
    assert [e.step for e in acc.Scalars("epoch")] == [1, 2]
    assert [(e.step, e.value) for e in acc.Scalars("again")] == [(3, 3.0)]


def test_read_metrics_skips_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + '{"step": 3, "lo')
    assert read_metrics(path) == good


def test_read_metrics_of_a_missing_file_is_empty(tmp_path):
    assert read_metrics(tmp_path / "nothing.jsonl") == []


def test_resuming_after_a_torn_line_gives_clean_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n" + '{"step": 2, "lo')
    with MetricsLogger(tmp_path, resume_step=2, tensorboard=False) as logger:
        logger.log(2, {"loss": 0.25})
    assert read_metrics(path) == [{"step": 1, "loss": 0.5}, {"step": 2, "loss": 0.25}]
    assert all(json.loads(line) for line in path.read_text().splitlines())
