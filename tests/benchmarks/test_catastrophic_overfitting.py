"""The summary of benchmarks/catastrophic_overfitting.py: a collapse is an epoch at the full eps with PGD
accuracy near zero and clean accuracy high, a ramp's early epochs do not count, and the table counts seeds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from catastrophic_overfitting import earlier_rows, markdown, summarise, summarise_run  # noqa: E402


def _write_run(folder: Path, pgd: list[float], clean: float, strong: float, stopped: bool = False,
               retried: int = 0) -> None:
    (folder / "eval").mkdir(parents=True)
    lines = [{"epoch": i + 1, "train": {}, "eval": {"clean_acc": clean, "pgd20_acc": p}} for i, p in enumerate(pgd)]
    if stopped:
        lines[-1]["stopped"] = "rolled back"
    if retried:
        lines[-1]["retried"] = [{"check_pgd_acc": 0.0}] * retried
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "model.json").write_text(json.dumps({"train_time_s": 100.0, "clean_test_accuracy": clean}))
    (folder / "eval" / "result.json").write_text(json.dumps({"robust_acc": strong, "clean_acc": clean, "n": 500,
                                                             "warnings": []}))


def test_collapse_is_pgd_near_zero_with_high_clean_accuracy_after_the_ramp(tmp_path):
    _write_run(tmp_path / "a", [0.3, 0.01, 0.6], clean=0.97, strong=0.2)
    _write_run(tmp_path / "b", [0.0, 0.01, 0.6], clean=0.97, strong=0.7)
    _write_run(tmp_path / "c", [0.3, 0.01, 0.6], clean=0.5, strong=0.1, stopped=True)
    assert summarise_run(tmp_path / "a", ramp_epochs=0)["collapsed_epochs"] == [2]
    assert summarise_run(tmp_path / "b", ramp_epochs=2)["collapsed_epochs"] == []  # still ramping
    c = summarise_run(tmp_path / "c", ramp_epochs=0)
    assert c["collapsed_epochs"] == [] and c["guard_fired"]  # clean accuracy too low to call it a collapse
    assert summarise_run(tmp_path / "missing", ramp_epochs=0) is None


def test_table_counts_collapses_and_seeds_reaching_80(tmp_path):
    _write_run(tmp_path / "wong" / "s0", [0.3, 0.0, 0.5], clean=0.98, strong=0.3)
    _write_run(tmp_path / "wong" / "s1", [0.3, 0.6, 0.9], clean=0.98, strong=0.85)
    table = summarise(tmp_path, ["wong", "n-fgsm"], [0, 1, 2])
    assert list(table) == ["wong"]
    row = table["wong"]
    assert row["collapsed"] == 1 and row["reached_80"] == 1 and len(row["seeds"]) == 2
    assert row["strong_min"] == 0.3 and row["strong_max"] == 0.85
    assert "| 30.0%, 85.0% | 57.5% |" in markdown(table, 500)


def test_retries_count_as_the_guard_firing(tmp_path):
    _write_run(tmp_path / "a", [0.3, 0.5, 0.6], clean=0.97, strong=0.8, retried=2)
    run = summarise_run(tmp_path / "a", ramp_epochs=0)
    assert run["guard_fired"] and run["retries"] == 2


def test_a_summary_keeps_the_rows_of_recipes_it_did_not_run(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"n": 500, "runs": "/old", "recipes": {"wong": {"strong_mean": 0.4},
                                                                       "n-fgsm": {"strong_mean": 0.0}}}))
    kept = earlier_rows(path, 500, {"wong": {"strong_mean": 0.5}})
    assert kept == {"n-fgsm": {"runs": "/old", "strong_mean": 0.0}}
    assert earlier_rows(path, 1000, {}) == {}  # another number of images: not comparable
    assert earlier_rows(tmp_path / "none.json", 500, {}) == {}
