"""``alva attack`` with a minimum-norm attack: one run, the curve read from its distances (the --curve values plus
--eps), the distances and the figure written; the report shows them."""

from __future__ import annotations

import json
import math

import pytest

from alva.cli.main import main
from alva.report.html import build_report


@pytest.fixture(scope="module")
def ddn_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ddn"
    code = main(["attack", "--model", "mnist/cnn-small", "--attack", "ddn", "--steps", "30", "--n", "60",
                 "--curve", "0,1,2", "--eps", "1.25", "--no-progress", "--out", str(out)])
    assert code == 0
    return out


def test_the_curve_comes_from_the_distances_of_one_run(ddn_run):
    summary = json.loads((ddn_run / "summary.json").read_text())
    assert summary["kind"] == "attack-summary"
    figures = summary["report"]["minimum_norm"]
    assert figures["norm"] == "l2" and figures["success_rate"] > 0.9
    assert summary["settings"]["norm"] == "l2"  # the attack's norm, not the default of --norm
    distances = summary["distances"]
    assert len(distances) == 60
    curve = summary["eps_curve"]
    assert [p["eps"] for p in curve] == [0.0, 1.0, 1.25, 2.0]  # --curve, with --eps added
    for point in curve:
        above = sum(d > point["eps"] * (1 + 1e-5) + 1e-7 for d in distances) / len(distances)
        assert point["robust_acc"] == pytest.approx(above)
    broken = sorted(d for d in distances if 0 < d < math.inf)
    assert figures["median"] == pytest.approx(broken[(len(broken) - 1) // 2], rel=1e-5)
    assert (ddn_run / "distance_curve.png").stat().st_size > 1000 and (ddn_run / "grid.png").exists()
    assert not (ddn_run / "eps_curve.png").exists()  # no sweep of attacks was run


def test_the_report_shows_the_minimum_norm_figures(ddn_run):
    _, sections = build_report(ddn_run.parent)
    section = next(s for s in sections if s.path.endswith("ddn"))
    captions = [t.caption for t in section.tables]
    assert "DDN: smallest perturbations" in captions and "robust accuracy against eps" in captions
    assert any(i.name == "distance_curve.png" and "minimum-norm" in i.caption for i in section.images)


def test_cw_prints_the_curve_and_refuses_a_bad_option(tmp_path, capsys):
    out = tmp_path / "cw"
    assert main(["attack", "--model", "mnist/cnn-small", "--attack", "cw", "--steps", "20", "--option",
                 "binary_steps=2", "--n", "20", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "minimum-norm (l2)" in printed and "robust acc at eps: 0:" in printed
    assert json.loads((out / "summary.json").read_text())["settings"]["eps"] is None
    assert main(["attack", "--attack", "cw", "--option", "binary_steps=0", "--n", "5", "--no-progress",
                 "--out", str(tmp_path / "bad")]) != 0
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize(("norm", "expected"), [(None, "l2"), ("linf", "linf")])
def test_deepfool_runs_under_its_own_norm_unless_told(tmp_path, norm, expected):
    out = tmp_path / "deepfool"
    args = ["attack", "--model", "mnist/cnn-small", "--attack", "deepfool", "--steps", "10", "--n", "20",
            "--no-progress", "--out", str(out)] + (["--norm", norm] if norm else [])
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["settings"]["norm"] == expected and summary["report"]["minimum_norm"]["norm"] == expected
    assert summary["report"]["minimum_norm"]["success_rate"] > 0.8
