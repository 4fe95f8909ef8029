"""The measurement of benchmarks/peers_decision.py: success checked by the model inside the box, the median distance
with failures infinitely far, and the query-efficiency part's output."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from peers_decision import Counting, main, measure  # noqa: E402

from alva.tracking import json_kind  # noqa: E402


class FirstPixel(nn.Module):
    """Class 1 where the first pixel is above 0.5, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        above = (x.flatten(1)[:, 0] > 0.5).float()
        return torch.stack([1 - above, above], dim=1)


def test_measure_checks_the_model_and_the_box_and_counts_failures_as_infinitely_far():
    x = torch.zeros(4, 1, 2, 2)
    y = torch.zeros(4, dtype=torch.long)
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.6   # flips: L2 0.6
    x_adv[1, 0, 0, 0] = 0.9   # flips: L2 0.9
    x_adv[2, 0, 0, 0] = 1.5   # outside the box: a failure
    x_adv[3, 0, 0, 1] = 0.2   # does not flip
    row = measure(FirstPixel(), x, y, x_adv, "l2")
    assert row["success"] == 0.5 and row["median"] == pytest.approx(0.9)  # the median of 0.6, 0.9, inf, inf
    counter = Counting(FirstPixel())
    counter(x.double())
    assert counter.rows == 4


def test_the_efficiency_part_writes_its_rows(tmp_path):
    out = tmp_path / "eff.json"
    main(["--part", "efficiency", "--n", "10", "--budgets", "30", "--models", "mnist/cnn-small", "--json", str(out)])
    data = json.loads(out.read_text())
    assert json_kind(data) == "decision-efficiency"
    assert {(r["attack"], r["norm"]) for r in data["rows"]} == {("hsj", "l2"), ("hsj", "linf"), ("boundary", "l2"),
                                                                 ("sign-opt", "l2")}
    assert all(r["mean_queries"] <= 30 for r in data["rows"])
