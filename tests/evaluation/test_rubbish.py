"""Rubbish-class rate: noise images, a threshold on the top probability, eval mode restored."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alva.evaluation.rubbish import gaussian_noise, rubbish_rate


class Fixed(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.logits = torch.tensor(logits)

    def forward(self, x):
        return self.scale * self.logits.expand(len(x), -1)


def test_noise_is_reproducible_and_in_range():
    a, b = gaussian_noise(100, (1, 28, 28), seed=3), gaussian_noise(100, (1, 28, 28), seed=3)
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1 and a.shape == (100, 1, 28, 28)
    assert not torch.equal(a, gaussian_noise(100, (1, 28, 28), seed=4))


def test_rate_follows_the_threshold():
    confident = Fixed([10.0] + [0.0] * 9)  # top probability 0.9995
    unsure = Fixed([0.0] * 10)  # top probability 0.1
    assert rubbish_rate(confident, n=200, shape=(1, 28, 28))["rubbish_rate"] == 1.0
    assert rubbish_rate(unsure, n=200, shape=(1, 28, 28))["rubbish_rate"] == 0.0
    assert rubbish_rate(confident, n=200, shape=(1, 28, 28), confidence=0.99999)["rubbish_rate"] == 0.0


def test_shipped_model_restored_to_its_mode(load_zoo):
    model = load_zoo("mnist/softmax").train()
    figures = rubbish_rate(model, n=500)
    assert model.training
    assert 0 <= figures["rubbish_rate"] <= 1 and 0.1 <= figures["mean_top_probability"] <= 1
    with pytest.raises(ValueError, match="confidence"):
        rubbish_rate(model, confidence=1.5)


@pytest.fixture
def load_zoo():
    import alva.models

    return alva.models.load


def test_the_noise_takes_the_shape_on_the_models_card_and_a_model_without_one_needs_it():
    from alva.attacks import AttackInputError
    from alva.models import create

    rgb = create("cnn-small", in_shape=(3, 32, 32))
    assert rubbish_rate(rgb, n=20)["n"] == 20  # 3 x 32 x 32 noise: a 1 x 28 x 28 batch would not fit this model
    with pytest.raises(AttackInputError, match="image shape"):
        rubbish_rate(Fixed([0.0] * 10), n=20)
