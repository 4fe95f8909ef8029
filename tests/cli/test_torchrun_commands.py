"""`alva attack` and `alva eval` under torchrun (two gloo processes): each process attacks its share of the images
and the written figures are those of one process."""

from __future__ import annotations

import json
from pathlib import Path

from alva.cli.main import main

ATTACK = ["attack", "--model", "mnist/cnn-small", "--attack", "pgd", "--steps", "5", "--n", "200", "--seed", "0",
          "--no-curve", "--no-progress"]
EVAL = ["eval", "--model", "mnist/cnn-small", "--eps", "0.1", "--version", "quick", "--n", "120", "--no-sanity",
        "--no-progress"]


def _read(folder: Path, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_attack_and_eval_under_torchrun_write_what_one_process_writes(tmp_path, torchrun):
    torchrun("-m", "--", "alva.cli.main", *ATTACK, "--out", str(tmp_path / "attack-2"), timeout=300)
    torchrun("-m", "--", "alva.cli.main", *EVAL, "--out", str(tmp_path / "eval-2"), timeout=300)
    assert main([*ATTACK, "--out", str(tmp_path / "attack-1")]) == 0
    assert main([*EVAL, "--out", str(tmp_path / "eval-1")]) == 0

    one, two = _read(tmp_path / "attack-1", "summary.json"), _read(tmp_path / "attack-2", "summary.json")
    assert two["report"] == one["report"] and one["report"]["n"] == 200
    assert (tmp_path / "attack-2" / "grid.png").is_file()
    one, two = _read(tmp_path / "eval-1", "result.json"), _read(tmp_path / "eval-2", "result.json")
    for key in ("n", "clean_acc", "robust_acc"):
        assert two[key] == one[key], key
    assert [row["robust_acc"] for row in two["table"]] == [row["robust_acc"] for row in one["table"]]
