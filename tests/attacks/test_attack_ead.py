"""EAD (alva.attacks.ead) on real MNIST images and the shipped mnist/cnn-small: adversarial points at the L1
distance reported, the box kept, the decision rules (each returns the successful iterate of smallest L1, or of
smallest elastic-net cost, among all it tried), a targeted run that reaches the target, and a sparser result than
a PGD-L1 sweep at the same success."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import distance, pgd_sweep, predict

from alva.attacks import EAD, AttackInputError, MinimumNormResult
from alva.attacks.ead import shrink

BUDGET = {"steps": 50, "binary_steps": 5, "initial_const": 1e-2}


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


class Recording(EAD):
    """EAD that keeps every iterate it offers: per sample, the L1 distance, elastic-net cost and success."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def offer(self, run, rows, x, logits):
        success = super().offer(run, rows, x, logits)
        self.seen.append((rows.rows.clone(), self.norm.measure(x - rows.x0), self.elastic_net(x, rows.x0), success))
        return success

    def smallest(self, n: int, which: int) -> torch.Tensor:
        """Per sample, the smallest L1 (which=1) or elastic-net cost (which=2) among its successful iterates."""
        best = torch.full((n,), math.inf)
        for record in self.seen:
            index, value, success = record[0], record[which], record[3]
            best[index[success]] = torch.minimum(best[index[success]], value[success])
        return best


def test_shrink_thresholds_around_the_clean_point_and_keeps_the_box():
    x0 = torch.tensor([0.5, 0.5, 0.5, 0.0, 1.0])
    z = torch.tensor([0.55, 0.52, 0.40, -0.5, 1.5])
    expected = torch.tensor([0.52, 0.5, 0.43, 0.0, 1.0])
    torch.testing.assert_close(shrink(z, x0, 0.03, (0.0, 1.0)), expected)


def test_points_are_adversarial_at_the_l1_distance_reported(cnn_small, batch):
    x, y = batch
    result = EAD(cnn_small, **BUDGET)(x, y)
    assert isinstance(result, MinimumNormResult) and result.norm == "l1"
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.success_rate >= 0.95
    broken = result.success
    assert (predict(cnn_small, result.x_adv)[broken] != y[broken]).all()
    torch.testing.assert_close(result.distances[broken].double(), distance("l1", result.x_adv, x)[broken],
                               rtol=1e-5, atol=1e-5)
    assert torch.isinf(result.distances[~broken]).all()
    # Two passes per iteration (the slack point, the iterate) and the clean one.
    assert torch.equal(result.queries, 2 * result.steps + 1)


def test_each_decision_rule_returns_its_best_success(cnn_small, batch):
    """The same iterates (the rule only chooses among them): "l1" returns each sample's successful iterate of
    smallest L1, "en" the one of smallest elastic-net cost, so each wins on its own measure."""
    x, y = batch
    by_l1, by_en = Recording(cnn_small, **BUDGET), Recording(cnn_small, decision_rule="en", **BUDGET)
    l1, en = by_l1(x, y), by_en(x, y)
    assert torch.equal(l1.success, en.success)
    clean_wrong = predict(cnn_small, x) != y  # not searched: distance 0
    assert clean_wrong.any() and (l1.distances[clean_wrong] == 0).all()
    broken = l1.success & ~clean_wrong
    torch.testing.assert_close(l1.distances[broken], by_l1.smallest(len(x), 1)[broken], rtol=1e-6, atol=1e-6)
    cost_l1, cost_en = by_l1.elastic_net(l1.x_adv, x), by_en.elastic_net(en.x_adv, x)
    torch.testing.assert_close(cost_en[broken], by_en.smallest(len(x), 2)[broken], rtol=1e-6, atol=1e-6)
    assert (l1.distances[broken] <= en.distances[broken] + 1e-5).all()
    assert (cost_en[broken] <= cost_l1[broken] + 1e-6).all()
    assert (l1.distances[broken] < en.distances[broken] - 1e-3).any()  # the rules do differ


def test_targeted_reaches_the_target(cnn_small, batch):
    x, y = batch
    target = (y + 3) % 10
    result = EAD(cnn_small, **BUDGET)(x, y, target=target)
    assert result.success_rate >= 0.9
    assert (predict(cnn_small, result.x_adv)[result.success] == target[result.success]).all()


def test_confidence_is_a_margin_the_successes_hold(cnn_small, batch):
    x, y = batch
    result = EAD(cnn_small, confidence=2.0, **BUDGET)(x, y)
    logits = cnn_small(result.x_adv).detach()
    own = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.scatter(1, y[:, None], -math.inf).amax(dim=1)
    assert result.success_rate >= 0.9 and (others - own)[result.success].min() >= 2.0 - 1e-4


def test_sparser_than_a_pgd_l1_sweep(cnn_small, batch):
    """With beta = 0.01, EAD (5 x 100 steps) breaks at least as many samples as PGD-L1 (20 steps) at any of the
    radii 2, 4, ..., 20, at a median L1 no larger (failures count as infinitely far). At the paper's beta = 0.001
    the L2 term dominates and EAD's L1 distances are larger."""
    x, y = batch
    sweep = pgd_sweep(cnn_small, x, y, "l1", [2.0 * i for i in range(1, 11)])
    result = EAD(cnn_small, beta=1e-2, **{**BUDGET, "steps": 100})(x, y)
    assert result.success.sum() >= (sweep < math.inf).sum()
    assert result.distances.median() <= sweep.median()


@pytest.mark.parametrize("settings", [{"decision_rule": "l2"}, {"steps": 0}, {"binary_steps": 0}, {"beta": -1.0},
                                      {"initial_const": 0.0}, {"lr": 0.0}, {"confidence": -1.0}])
def test_bad_settings_raise(cnn_small, settings):
    with pytest.raises(AttackInputError):
        EAD(cnn_small, **settings)
