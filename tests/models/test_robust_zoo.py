"""The adversarially trained models of the zoo: honest cards, and robustness a user can rely on."""

from __future__ import annotations

import pytest

from alva.attacks import PGD
from alva.data import fixed_subset
from alva.evaluation.accuracy import accuracy
from alva.models import card, load

ROBUST = ["mnist/cnn-small-pgd", "mnist/cnn-small-fast", "mnist/cnn-small-wong", "mnist/cnn-wide-pgd",
          "mnist/cnn-wide-trades", "mnist/cnn-wide-trades-long"]


@pytest.mark.parametrize("name", ROBUST)
def test_robust_card_records_recipe_and_figures(name):
    info = card(name)
    assert info["command"].startswith("alva train") and "--adv" in info["command"]
    assert info["objective"]["name"] in ("pgd", "fast", "trades") and info["objective"]["eps"] == 0.3
    figures = info["robustness"]
    assert figures["eps"] == 0.3 and figures["n"] == 1000
    assert figures["clean_acc"] >= figures["fgsm_acc"] >= figures["pgd50x10_acc"] >= figures["strong_acc"] > 0.5


@pytest.mark.parametrize("name", ROBUST)
def test_robust_model_resists_pgd_as_its_card_says(name, mnist_test):
    model = load(name)
    x, y = fixed_subset(*mnist_test, 200, seed=1)
    robust = 1 - PGD(model, eps=0.3, alpha=0.01, steps=40, seed=0)(x, y).success.float().mean().item()
    assert robust >= card(name)["robustness"]["pgd50x10_acc"] - 0.08
    assert accuracy(model, *mnist_test) == pytest.approx(card(name)["clean_test_accuracy"], abs=5e-4)


def test_adversarial_training_bought_robustness(mnist_test):
    x, y = fixed_subset(*mnist_test, 200, seed=1)
    standard = PGD(load("mnist/cnn-small"), eps=0.3, steps=20, seed=0)(x, y).success.float().mean().item()
    robust = PGD(load("mnist/cnn-small-pgd"), eps=0.3, steps=20, seed=0)(x, y).success.float().mean().item()
    assert standard > 0.95 and robust < 0.25
