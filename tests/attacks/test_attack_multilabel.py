"""Attacks on one label of a multi-label model: the existing PGD and FGSM with multi-label losses."""

from __future__ import annotations

import pytest
import torch

from alva.attacks import FGSM, PGD, AttackInputError
from alva.attacks.multilabel import NaiveBCE, SingleLabelFlip, predicted_labels
from alva.data.multilabel import make_multilabel_mnist
from alva.evaluation.label_flips import attack_one_label, label_flip_report
from alva.models import load

ZOO_NAME = "mnist-multilabel/cnn-gmp"


@pytest.fixture(scope="module")
def model():
    return load(ZOO_NAME)


@pytest.fixture(scope="module")
def images():
    x, _ = make_multilabel_mnist("test", 120, seed=7)
    return x


@pytest.fixture(scope="module")
def held(model, images):
    with torch.no_grad():
        return predicted_labels(model(images))


def test_single_label_attack_flips_its_target_and_spares_the_others(model, images):
    naive = attack_one_label(PGD(model, eps=0.2, steps=30, loss=NaiveBCE(), target="positive", seed=0), images)
    single = attack_one_label(PGD(model, eps=0.2, steps=30, loss=SingleLabelFlip(), target="positive",
                                  early_stop=True, seed=0), images)
    assert single["success"] >= 0.8
    assert single["collateral"] < naive["collateral"]
    assert single["only_target"] > naive["only_target"]
    # Maximising the BCE of all labels turns off most labels that were on.
    assert naive["positives_turned_off"] > 0.5


def test_targets_by_rule_are_labels_that_are_on_or_off(model, images, held):
    for rule, wanted in (("positive", 1.0), ("negative", 0.0)):
        result = PGD(model, eps=0.1, steps=2, loss=SingleLabelFlip(), target=rule, seed=0)(images, held)
        has_kind = (held == wanted).any(1)
        chosen = held.gather(1, result.target[:, None]).squeeze(1)
        assert (chosen[has_kind] == wanted).all()


@pytest.mark.parametrize("attack_cls", [FGSM, PGD])
def test_multilabel_attacks_respect_the_ball_and_bounds(model, images, held, attack_cls):
    result = attack_cls(model, eps=0.1, loss=NaiveBCE(), seed=0)(images[:20], held[:20])
    assert (result.x_adv - images[:20]).abs().max() <= 0.1 + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    # Untargeted naive success means: some label changed.
    assert torch.equal(result.success, (predicted_labels(result.adv_logits) != held[:20]).any(1))


def test_success_of_the_flip_is_exactly_target_flipped_and_others_kept(model, images, held):
    result = PGD(model, eps=0.15, steps=10, loss=SingleLabelFlip(), target="random", seed=1)(images, held)
    changed = predicted_labels(result.adv_logits) != held
    target_changed = changed.gather(1, result.target[:, None]).squeeze(1)
    expected = target_changed & (changed.sum(1) == target_changed.int())
    assert torch.equal(result.success, expected)


def test_flip_report_on_hand_made_predictions():
    clean = torch.tensor([[5.0, 5.0, -5.0], [5.0, -5.0, -5.0]])
    adv = torch.tensor([[-5.0, 5.0, 5.0], [5.0, -5.0, -5.0]])  # sample 0: target 0 off, label 2 on
    report = label_flip_report(clean, adv, torch.tensor([0, 1]))
    assert report["success"] == 0.5
    assert report["collateral"] == 0.5
    assert report["hamming"] == 1.0
    assert report["only_target"] == 0.0
    assert report["positives_turned_off"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("bad, message", [
    (lambda y: y[:, :5], "labels but the model has 10 outputs"),
    (lambda y: y * 2, "only 0 and 1"),
    (lambda y: y[:, 0].long(), "N x K multi-hot"),
])
def test_bad_multilabel_labels_raise(model, images, held, bad, message):
    with pytest.raises(AttackInputError, match=message):
        PGD(model, eps=0.1, steps=1, loss=NaiveBCE())(images[:4], bad(held[:4]))


def test_bad_targets_and_missing_target_raise(model, images, held):
    attack = PGD(model, eps=0.1, steps=1, loss=SingleLabelFlip())
    with pytest.raises(AttackInputError, match="needs the label to flip"):
        attack(images[:4], held[:4])
    with pytest.raises(AttackInputError, match="label indices"):
        attack(images[:4], held[:4], target=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(AttackInputError, match="integer label indices"):
        attack(images[:4], held[:4], target=torch.zeros(4))
    with pytest.raises(AttackInputError, match="unknown target rule"):
        PGD(model, loss=SingleLabelFlip(), target="least-likely")
    with pytest.raises(AttackInputError, match="hold must be"):
        SingleLabelFlip(hold=-1)


def test_one_label_attack_without_a_label_to_attack_raises(model, images):
    # An untargeted attack without a target rule has no label to flip: a clear error, not a failed concatenation.
    with pytest.raises(ValueError, match="needs a label to attack"):
        attack_one_label(PGD(model, eps=0.1, steps=1, loss=NaiveBCE()), images[:4])
