"""The figures of a minimum-norm attack in evaluate_attack: the curve read from one run's distances agrees with
the attack's own result and with the returned points, in one batch or several; the summary's definitions."""

from __future__ import annotations

import math

import pytest
import torch

from alva.attacks import DDN, PGD, Repeated
from alva.data import fixed_subset
from alva.evaluation import evaluate_attack, run_attack
from alva.evaluation.minimum_norm import (
    curve_from_distances,
    default_eps_values,
    minimum_norm_name,
    minimum_norm_summary,
)


def test_summary_follows_the_definitions():
    inf = math.inf
    distances = torch.tensor([0.0, 0.5, 1.0, 2.0, inf])  # sample 0 wrong before the attack, sample 4 not broken
    clean_ok = torch.tensor([False, True, True, True, True])
    s = minimum_norm_summary(distances, clean_ok, "l2", [0.0, 0.5, 1.5, 10.0])
    assert s["norm"] == "l2" and s["success_rate"] == 0.75
    assert s["median"] == 1.0 and abs(s["mean"] - 3.5 / 3) < 1e-6 and s["median_all"] == 1.0
    curve = [p["robust_acc"] for p in s["curve"]]
    assert curve == pytest.approx([0.8, 0.6, 0.4, 0.2])  # a distance equal to eps is broken at eps
    assert curve_from_distances(distances, [0.0]) == [{"eps": 0.0, "robust_acc": pytest.approx(0.8)}]
    nothing = minimum_norm_summary(torch.full((3,), inf), torch.ones(3, dtype=torch.bool), "linf")
    assert nothing["success_rate"] == 0 and math.isnan(nothing["median"]) and nothing["curve"][0]["robust_acc"] == 1


def test_default_eps_values_span_the_distances():
    values = default_eps_values(torch.tensor([0.0, 0.7, 2.345, math.inf]))
    assert values[0] == 0 and len(values) == 7 and 2.345 <= values[-1] <= 2.4
    assert default_eps_values(torch.tensor([math.inf, 0.0])) == [0.0]


def test_evaluate_attack_gives_the_curve_of_one_run(cnn_small, mnist_test):
    x, y = fixed_subset(*mnist_test, 60, seed=3)
    attack = DDN(cnn_small, steps=30)
    eps = [0.0, 0.5, 1.0, 1.5, 2.0]
    direct = attack(x, y)
    report, batch = evaluate_attack(attack, x, y, batch_size=25, progress=False, eps_values=eps)  # three batches
    figures = report.minimum_norm
    assert figures is not None and figures["norm"] == "l2"
    assert [p["eps"] for p in figures["curve"]] == eps
    assert [p["robust_acc"] for p in figures["curve"]] == direct.curve(eps)  # a sample's result: any batch
    assert report.robust_acc == 1 - direct.success.float().mean().item()  # robust at any eps: not broken
    broken = direct.success & (direct.clean_logits.argmax(1) == y)
    assert abs(figures["median"] - direct.distances[broken].median().item()) < 1e-6
    # The curve is what the returned points show: within eps, the model misclassifies them.
    for point in figures["curve"]:
        inside = (batch.x_adv - batch.x).flatten(1).norm(dim=1) <= point["eps"] + 1e-5
        fooled = batch.adv_pred != batch.y
        assert abs(1 - (inside & fooled).float().mean().item() - point["robust_acc"]) < 1e-6


def test_run_attack_keeps_the_distances_over_batches(cnn_small, mnist_test):
    x, y = fixed_subset(*mnist_test, 30, seed=4)
    result = run_attack(DDN(cnn_small, steps=10), x, y, batch_size=7, progress=False)
    assert result.norm == "l2" and len(result.distances) == 30
    measured = (result.x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(result.distances[result.success], measured[result.success], atol=1e-5)


def test_other_attacks_have_no_minimum_norm_figures(cnn_small, mnist_test):
    x, y = fixed_subset(*mnist_test, 20, seed=5)
    report, _ = evaluate_attack(PGD(cnn_small, eps=0.1, steps=3), x, y, progress=False)
    assert report.minimum_norm is None
    assert minimum_norm_name(Repeated(DDN(cnn_small, steps=2), 2)) == "l2"
    assert minimum_norm_name(PGD(cnn_small)) is None
