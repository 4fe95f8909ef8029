"""The measurement of benchmarks/compare_min_norm.py: norms of perturbations, success, ratios to the best peer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from compare_min_norm import Group, add_ratios, parse_args, perturbation_norms, score, table  # noqa: E402


def test_norms_count_pixels_for_l0_and_measure_lp():
    delta = torch.zeros(2, 3, 4, 4)
    delta[0, :, 1, 1] = 0.5     # one pixel, all three channels
    delta[0, 0, 2, 3] = -0.25   # a second pixel, one channel
    delta[1, 1, 0, 0] = 1e-8    # below the tolerance: unchanged
    assert perturbation_norms(delta, "l0").tolist() == [2.0, 0.0]
    assert perturbation_norms(delta, "l1")[0].item() == pytest.approx(1.75)
    assert perturbation_norms(delta, "l2")[0].item() == pytest.approx((3 * 0.25 + 0.0625) ** 0.5)
    assert perturbation_norms(delta, "linf")[0].item() == pytest.approx(0.5)


class FirstPixel(nn.Module):
    """Class 1 where the first pixel is above 0.5, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        above = (x.flatten(1)[:, 0] > 0.5).float()
        return torch.stack([1 - above, above], dim=1)


def test_score_clips_to_the_box_and_counts_only_clean_correct_points_inside_the_ball():
    x = torch.zeros(4, 1, 2, 2)
    y = torch.tensor([0, 0, 0, 1])  # the last one is misclassified before the attack
    x_adv = x.clone()
    x_adv[0, 0, 0, 0] = 0.6         # flips, L-inf 0.6
    x_adv[1, 0, 0, 0] = 1.5         # flips, outside the box: clipped to 1
    x_adv[2, 0, 0, 1] = 0.2         # does not flip
    r = score(FirstPixel(), x, y, None, x_adv, Group("g", "linf", eps=0.8))
    assert (r["attacked"], r["success"], r["out_of_box"]) == (3, 1, 1)     # point 1: L-inf 1 > eps 0.8
    assert r["success_rate"] == pytest.approx(1 / 3) and r["median_norm"] == pytest.approx(0.6)
    assert r["outside_ball"] == 1 and r["box_excess"] == pytest.approx(0.5)
    minimum_norm = score(FirstPixel(), x, y, None, x_adv, Group("g", "linf"))
    assert minimum_norm["success"] == 2 and minimum_norm["median_norm_failures_inf"] == pytest.approx(1.0)
    targeted = score(FirstPixel(), x, y, torch.tensor([0, 1, 1, 0]), x_adv, Group("g", "l0", targeted=True))
    assert targeted["success"] == 1 and targeted["median_norm"] == 1.0  # only point 1 reached its target


def row(library: str, seconds: float, images: int, median: float | None, success: int = 10) -> dict:
    return {"model": "m", "group": "g", "library": library, "version": "1", "note": "", "seconds": seconds,
            "cpu_seconds": seconds / 2, "images": images, "median_norm": median, "mean_norm": median,
            "median_norm_failures_inf": median if success else float("inf"), "success": success,
            "success_rate": success / 10, "out_of_box": 0, "box_excess": 0.0}


def test_ratios_are_per_image_against_the_best_peer_that_succeeded():
    rows = [row("alva", 2.0, 100, 0.9), row("a", 4.0, 100, 1.2), row("b", 1.0, 50, 1.0),
            row("c", 0.1, 100, None, success=0), {"model": "m", "group": "g", "library": "d", "version": "1",
                                                  "note": "failed: error"}]
    add_ratios(rows, {"g": Group("g", "l2")})
    assert [r["time_ratio"] for r in rows[:3]] == pytest.approx([1.0, 2.0, 1.0])  # b: 0.02 s per image
    assert [r["cpu_ratio"] for r in rows[:3]] == pytest.approx([1.0, 2.0, 1.0])
    assert rows[4]["time_ratio"] is None and rows[4]["norm_ratio"] is None
    assert [r["norm_ratio"] for r in rows[:3]] == pytest.approx([0.9, 1.2, 1.0])
    text = table(rows, {"g": Group("g", "l2")})
    assert text.count("\n") == 6 and "| m | g | d 1 | | failed: error |" in text
    assert "| m | g | alva 1 | 100 | 1.000 | 0.9 | 0.9 | 0.9 | 2.0 | 1.0 | 1 | 1 | 0.9 |" in text
    add_ratios(rows, {"g": Group("g", "l2", eps=1.0)})
    assert all(r["norm_ratio"] is None for r in rows)  # a radius: the success rates compare, not the norms


def test_attack_families_select_their_groups():
    assert parse_args(["--attacks", "fab,cw-l2"]).attacks == ["cw-l2", "fab-linf", "fab-l2", "fab-l1"]
    with pytest.raises(SystemExit):
        parse_args(["--attacks", "nothing"])
