"""The shipped multi-label models: they load from the zoo, say how to read their outputs, and reach their cards."""

from __future__ import annotations

import pytest
import torch

from alva.data import make_multilabel_mnist
from alva.evaluation.accuracy import predict_logits
from alva.evaluation.multilabel import multilabel_metrics
from alva.models import available, card, load

MULTILABEL = [name for name in available() if card(name)["task"] == "multilabel"]


@pytest.fixture(scope="module")
def card_test_set():
    """The test set the cards were measured on: 5000 grids from the MNIST test split, seed 0."""
    return make_multilabel_mnist("test", 5000, seed=0)


def test_the_multilabel_cnn_small_is_shipped():
    assert "mnist-multilabel/cnn-small" in MULTILABEL


def test_old_cards_read_as_multiclass():
    assert card("mnist/cnn-small")["task"] == "multiclass"


@pytest.mark.parametrize("name", MULTILABEL)
def test_shipped_multilabel_card(name):
    info = card(name)
    assert info["architecture"] == name.split("/")[1]
    assert info["in_shape"] == [1, 56, 56] and info["num_classes"] == 10
    assert info["dataset"] == "mnist-multilabel" and info["decision_threshold"] == 0.5
    assert info["objective"]["name"] in ("asl", "bce")
    assert info["command"].startswith("alva train --dataset mnist-multilabel")
    assert f"--seed {info['seed']}" in info["command"]
    assert info["test_data"] == "alva.data.make_multilabel_mnist('test', 5000, seed=0)"
    assert info["clean_test_map"] > 0.95


@pytest.mark.parametrize("name", MULTILABEL)
def test_shipped_multilabel_model_reaches_its_card(name, card_test_set):
    model = load(name)
    assert not model.training and model.card["task"] == "multilabel"
    logits = predict_logits(model, card_test_set[0])
    assert logits.shape == (5000, 10)
    metrics = multilabel_metrics(logits, card_test_set[1], threshold=model.card["decision_threshold"])
    assert metrics["map"] == pytest.approx(model.card["clean_test_map"], abs=1e-4)
    assert metrics["exact_match"] == pytest.approx(model.card["clean_test_accuracy"], abs=1e-3)
    assert metrics["macro_f1"] == pytest.approx(model.card["clean_test_macro_f1"], abs=1e-3)


@pytest.mark.parametrize("name", MULTILABEL)
def test_shipped_multilabel_model_on_a_fresh_small_set(name):
    model = load(name)
    x, y = make_multilabel_mnist("test", 1000, seed=11)
    metrics = multilabel_metrics(predict_logits(model, x), y)
    assert metrics["map"] == pytest.approx(model.card["clean_test_map"], abs=0.01)
    # One sample at a time gives the same logits as in the batch.
    torch.testing.assert_close(model(x[3:4]), model(x[:8])[3:4], rtol=1e-5, atol=1e-5)
