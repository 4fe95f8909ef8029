"""Figures are real PNG images of the expected layout."""

from __future__ import annotations

import matplotlib.image as mpimg
import torch

from alva.attacks import FGSM
from alva.data import fixed_subset
from alva.evaluation import evaluate_attack
from alva.models import load
from alva.report import adversarial_grid, eps_curve_plot, pick_examples


def test_grid_and_curve_are_written_as_png(tmp_path, test_subset):
    x, y = fixed_subset(*test_subset, 40, seed=0)
    _, batch = evaluate_attack(FGSM(load("mnist/cnn-small"), eps=0.2), x, y, progress=False)
    grid = mpimg.imread(adversarial_grid(tmp_path / "grid.png", batch, n=10, title="t"))
    assert grid.shape[1] > grid.shape[0] > 100  # three rows of ten: wider than tall
    curve = eps_curve_plot(tmp_path / "curve.png", {"a": [{"eps": 0.0, "robust_acc": 1.0},
                                                          {"eps": 0.1, "robust_acc": 0.4}]})
    assert mpimg.imread(curve).ndim == 3
    assert not list(tmp_path.glob("*.tmp"))


def test_examples_prefer_successes_and_distinct_classes(test_subset):
    x, y = fixed_subset(*test_subset, 40, seed=0)
    _, batch = evaluate_attack(FGSM(load("mnist/cnn-small"), eps=0.1), x, y, progress=False)
    idx = pick_examples(batch, 10)
    assert len(set(idx.tolist())) == 10
    n_success = int(batch.success.sum())
    assert batch.success[idx].sum() == min(10, n_success)
    shown_success_classes = set(batch.y[idx][batch.success[idx]].tolist())
    assert len(shown_success_classes) == min(10, len(torch.unique(batch.y[batch.success])))
