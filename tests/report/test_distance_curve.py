"""The figure of robust accuracy against eps from minimum-norm distances: the exact steps, and the PNG."""

from __future__ import annotations

import math

import pytest

from alva.report import distance_curve_plot
from alva.report.content import PNG_SIGNATURE
from alva.report.figures import robust_accuracy_steps


def test_the_steps_are_the_share_of_larger_distances():
    xs, ys = robust_accuracy_steps([0.0, 2.0, 1.0, math.inf, 1.0])
    assert xs == [0.0, 1.0, 2.0]
    assert ys == pytest.approx([0.8, 0.4, 0.2])  # from each eps on: the samples whose distance is larger
    assert robust_accuracy_steps([]) == ([0.0], [0.0])


def test_the_figure_is_written(tmp_path):
    path = distance_curve_plot(tmp_path / "distance_curve.png", {"cw": [0.5, 1.0, math.inf], "ddn": [0.4, 0.9, 2.0]},
                               norm="l2", marks=[0.0, 1.0], title="model")
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
