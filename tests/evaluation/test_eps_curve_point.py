"""A point of an eps curve is the attack at that eps: the demo reuses its attack's report as the curve's last
point instead of running the attack again, which holds only while the two give the same figures."""

from __future__ import annotations

import pytest

from alva.attacks import FGSM, PGD
from alva.evaluation import eps_curve, evaluate_attack


@pytest.mark.parametrize("name", ["fgsm", "pgd"])
def test_the_curve_point_at_eps_equals_the_report_of_the_attack_at_eps(name, cnn_small, test_subset):
    x, y = test_subset[0][:200], test_subset[1][:200]

    def make(eps: float):
        return FGSM(cnn_small, eps=eps) if name == "fgsm" else PGD(cnn_small, eps=eps, alpha=0.01, steps=10, seed=0)

    report, _ = evaluate_attack(make(0.2), x, y, batch_size=64, progress=False)
    point = eps_curve(make, [0.2], x, y, batch_size=64, progress=False)[0]
    assert 0.0 < report.robust_acc < 1.0  # an attack that changes some predictions and not all
    assert point == {"eps": 0.2, "robust_acc": report.robust_acc, "adv_error": report.adv_error,
                     "confidence_misclassified": report.confidence_misclassified}
