"""Figures are real PNG images of the expected layout."""

from __future__ import annotations

import matplotlib.image as mpimg
import torch

from alva.attacks import FGSM, AttackResult
from alva.data import fixed_subset
from alva.evaluation import evaluate_attack
from alva.models import load
from alva.report import adversarial_grid, eps_curve_plot, pick_examples, sparse_grid
from alva.results import Batch


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


def test_examples_show_attack_successes_before_images_wrong_from_the_start():
    y = torch.tensor([0, 1, 2, 3])
    clean_pred = torch.tensor([5, 1, 2, 3])  # image 0 is misclassified before any attack
    adv_pred = torch.tensor([5, 7, 2, 3])
    x = torch.zeros(4, 1, 4, 4)
    batch = Batch(x, x, y, clean_pred, adv_pred, torch.ones(4), adv_pred != y)
    assert batch.wrong_before.tolist() == [True, False, False, False]
    assert pick_examples(batch, 4).tolist()[:2] == [1, 0]


def _sparse_result(images: torch.Tensor, per_class: int) -> AttackResult:
    n = len(images)
    target = torch.arange(n // per_class).repeat_interleave(per_class)
    logits = torch.nn.functional.one_hot(target, 10).float() * 5
    return AttackResult(images, torch.ones(n, dtype=torch.bool), torch.ones(n), torch.ones(n), logits, logits, target)


def test_sparse_grid_shows_identical_images_once(tmp_path):
    generator = torch.Generator().manual_seed(0)
    distinct = torch.rand(8, 1, 28, 28, generator=generator).round()
    same = distinct[::4].repeat_interleave(4, dim=0)  # two classes, four identical images each
    wide = mpimg.imread(sparse_grid(tmp_path / "distinct.png", _sparse_result(distinct, 4)))
    narrow = mpimg.imread(sparse_grid(tmp_path / "same.png", _sparse_result(same, 4)))
    aspect = lambda image: image.shape[0] / image.shape[1]  # noqa: E731
    assert aspect(wide) > 2.5 * aspect(narrow)  # a column per class: four images in it against one
