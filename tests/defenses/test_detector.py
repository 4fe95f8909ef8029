"""The adversarial-input detector: ROC AUC, training through fit, and the adaptive attack against it."""

from __future__ import annotations

import json

import pytest
import torch

import alva.models
from alva.attacks import FGSM, PGD
from alva.cli.main import main
from alva.defenses import (
    DetectedModel,
    DetectorAwareLoss,
    DetectorObjective,
    detection_auc,
    detector_scores,
    detector_threshold,
    roc_auc,
    train_detector,
)
from alva.training.loop import TrainSettings

EPS = 0.3



@pytest.fixture(scope="module")
def classifier():
    return alva.models.load("mnist/cnn-small")


@pytest.fixture(scope="module")
def eval_batch(test_subset):
    x, y = test_subset
    return x[::5], y[::5]  # 200 images, 20 per class


@pytest.fixture(scope="module")
def detector(classifier, train_subset):
    """A detector trained for 2 epochs on 2000 clean training images and their FGSM versions."""
    x, y = train_subset
    adv = FGSM(classifier, eps=EPS)(x, y).x_adv
    return train_detector(x, adv, settings=TrainSettings(epochs=2, batch_size=128, seed=0))


def brute_force_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).double() + 0.5 * (diff == 0).double()).mean().item()


def test_roc_auc_matches_the_pairwise_definition_with_ties():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        scores = torch.randint(0, 7, (300,), generator=g).float()  # many ties
        labels = torch.rand(300, generator=g) < 0.3
        assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)
    labels = torch.tensor([0, 0, 1, 1]).bool()
    assert roc_auc(torch.tensor([0.0, 1.0, 2.0, 3.0]), labels) == 1.0
    assert roc_auc(torch.tensor([3.0, 2.0, 1.0, 0.0]), labels) == 0.0
    assert roc_auc(torch.zeros(4), labels) == 0.5
    with pytest.raises(ValueError, match="both"):
        roc_auc(torch.zeros(3), torch.ones(3, dtype=torch.bool))


def test_detector_separates_fgsm_from_clean_on_a_small_budget(detector, classifier, eval_batch):
    x, y = eval_batch
    adv = FGSM(classifier, eps=EPS)(x, y).x_adv
    assert detection_auc(detector, x, adv) > 0.95
    assert detection_auc(detector, x, x) == 0.5  # the same images cannot be told apart
    assert detector_scores(detector, x).shape == (len(x),)


def test_detector_objective_and_threshold(detector, classifier, eval_batch):
    x, y = eval_batch
    adv = FGSM(classifier, eps=EPS)(x, y).x_adv
    labels = torch.cat([torch.zeros(len(x)), torch.ones(len(adv))]).long()
    figures = DetectorObjective().evaluate(detector, torch.cat([x, adv]), labels)
    assert set(figures) == {"acc", "auc"} and figures["acc"] > 0.9
    threshold = detector_threshold(detector, x, fpr=0.1)
    flagged = (detector_scores(detector, x) >= threshold).float().mean().item()
    assert flagged <= 0.1 + 1 / len(x)


def test_adaptive_attack_respects_the_ball_and_reports_joint_success(detector, classifier, eval_batch):
    x, y = eval_batch
    model = DetectedModel(classifier, detector)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (len(x), 11) and torch.equal(out[:, :10], classifier(x))
    threshold = detector_threshold(detector, x, fpr=0.05)
    loss = DetectorAwareLoss(c=1.0, threshold=threshold)
    r = PGD(model, eps=EPS, steps=10, loss=loss, seed=0)(x, y)
    assert (r.x_adv - x).abs().amax() <= EPS + 1e-6 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    with torch.no_grad():
        fooled = classifier(r.x_adv).argmax(1) != y
        evades = detector_scores(detector, r.x_adv) < threshold
    assert torch.equal(r.success, fooled & evades)
    assert r.success_rate > 0.5  # the adaptive attack beats this detector
    plain = PGD(classifier, eps=EPS, steps=10, seed=0)(x, y).x_adv
    # Aiming at the detector makes the images look cleaner to it than plain PGD's.
    assert detection_auc(detector, x, r.x_adv) < detection_auc(detector, x, plain)
    assert detector_scores(detector, r.x_adv).mean() < detector_scores(detector, plain).mean()


def test_detector_aware_loss_plain_and_hinged():
    logits = torch.tensor([[5.0, 0.0, -7.0], [0.0, 5.0, 3.0], [0.0, 5.0, -9.0]])  # 2 classes + detector logit
    y = torch.tensor([0, 0, 0])
    plain = DetectorAwareLoss(c=0.5, threshold=-2.0, base="ce", hinge=False)
    ce = torch.nn.functional.cross_entropy(logits[:, :2], y, reduction="none")
    assert torch.allclose(plain(logits, y, None), ce - 0.5 * logits[:, 2])
    hinged = DetectorAwareLoss(c=0.5, threshold=-2.0, kappa=2.0, detector_margin=1.0)
    # margins -5, 5, 5 (capped at 2); detector terms max(d + 3, 0) = 0, 6, 0.
    assert torch.allclose(hinged(logits, y, None), torch.tensor([-5.0, 2.0 - 3.0, 2.0]))
    assert hinged.success(logits, y, None).tolist() == [False, False, True]
    assert hinged.check_labels(y, 3).max() <= 1


def test_detect_command_writes_the_auc_table(tmp_path):
    out = tmp_path / "detect"
    code = main(["detect", "--train-size", "300", "--epochs", "1", "--n", "50", "--steps", "5", "--n-sparse", "10",
                 "--sparse-steps", "20", "--n-alva", "20", "--no-progress", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "summary.json").read_text())["rows"]
    assert [r["attack"] for r in rows] == ["fgsm", "pgd", "sparse", "alva", "adaptive-pgd hinge c=1"]
    assert [r["seen"] for r in rows] == [True, False, False, False, False]
    assert all(0 <= r["auc"] <= 1 for r in rows)
    assert "| fgsm | seen |" in (out / "table.md").read_text()


def test_detector_needs_images_and_writes_nothing_without_them(tmp_path):
    flat = torch.rand(8, 784)
    with pytest.raises(ValueError, match="N x C x H x W"):
        train_detector(flat, flat.clone(), out=tmp_path / "detector")
    assert not (tmp_path / "detector").exists()
