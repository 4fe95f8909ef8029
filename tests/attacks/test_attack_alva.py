"""ALVA: latent-space attacks through a generator (seed 000)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.alva import ALVA, alva_summary
from alva.attacks.errors import AttackInputError
from alva.models.generative import ConditionalGenerativeModel, GenerativeModel


class TinyConditional(ConditionalGenerativeModel):
    latent_shape = (8,)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8 + 10, 64), nn.ReLU(), nn.Linear(64, 784), nn.Sigmoid())

    def forward(self, z, y):
        return self.net(torch.cat([z, F.one_hot(y, 10).float()], 1)).view(-1, 1, 28, 28)


class TinyUnconditional(GenerativeModel):
    latent_shape = (8,)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 784), nn.Sigmoid())

    def forward(self, z):
        return self.net(z).view(-1, 1, 28, 28)


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    return TinyConditional()


@pytest.fixture(scope="module")
def latent(gen):
    return gen.get_noise(32, seed=0), gen.get_labels(32, seed=0)


def _seed_formula(gen, classifier, z, y, eps, conditional=True):
    zz = z.clone().requires_grad_(True)
    images = gen(zz, y) if conditional else gen(zz)
    (grad,) = torch.autograd.grad(F.cross_entropy(classifier(images), y, reduction="sum"), zz)
    return z + eps * grad.sign()


def test_one_step_is_exactly_the_seed_formula(gen, latent, cnn_small, softmax_model):
    z, y = latent
    result = ALVA(gen, cnn_small, eps=0.4, oracle=softmax_model)(z, y)
    assert torch.equal(result.z_adv, _seed_formula(gen, cnn_small, z, y, 0.4))
    assert torch.equal(result.x_adv, gen(result.z_adv, y))
    assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) != y)
    assert torch.equal(result.valid, softmax_model(result.x_adv).argmax(1) == y)
    assert torch.equal(result.valid_adversarial, result.success & result.valid)


def test_unconditional_labels_come_from_the_oracle(cnn_small, softmax_model):
    torch.manual_seed(1)
    gen = TinyUnconditional()
    z = gen.get_noise(16, seed=3)
    result = ALVA(gen, cnn_small, eps=0.3, oracle=softmax_model)(z)
    oracle_labels = softmax_model(gen(z)).argmax(1)
    assert torch.equal(result.y, oracle_labels)
    assert torch.equal(result.z_adv, _seed_formula(gen, cnn_small, z, oracle_labels, 0.3, conditional=False))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_iterative_steps_stay_in_the_latent_ball_and_images_are_valid(gen, latent, cnn_small, norm):
    z, y = latent
    result = ALVA(gen, cnn_small, eps=0.5, steps=8, norm=norm)(z, y)
    delta = (result.z_adv - z).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= 0.5 + 1e-5).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1 and torch.isfinite(result.x_adv).all()
    # The clean pass (the first step's too), 7 more steps, the final point.
    assert (result.steps == 8).all() and (result.queries == 9).all()


def test_iterations_fool_more_than_one_step_and_early_stop_saves_steps(gen, latent, cnn_small):
    z, y = latent
    one = ALVA(gen, cnn_small, eps=0.3)(z, y)
    many = ALVA(gen, cnn_small, eps=0.3, steps=20, alpha=0.05)(z, y)
    stopped = ALVA(gen, cnn_small, eps=0.3, steps=20, alpha=0.05, early_stop=True)(z, y)
    assert many.success.sum() >= one.success.sum()
    assert stopped.success.sum() >= many.success.sum() - 1
    assert stopped.steps.float().mean() < many.steps.float().mean()


def test_targeted_success_means_the_target_was_reached(gen, latent, cnn_small):
    z, y = latent
    result = ALVA(gen, cnn_small, eps=1.0, steps=30, alpha=0.1, target="random", seed=0)(z, y)
    assert (result.target != y).all()
    assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) == result.target)


def test_summary_and_modes(gen, latent, cnn_small, softmax_model):
    z, y = latent
    gen.train()
    summary = alva_summary(ALVA(gen, cnn_small, eps=0.2, oracle=softmax_model)(z, y))
    assert gen.training and not any(p.grad is not None for p in gen.parameters())
    assert summary["latent_linf"] == pytest.approx(0.2)
    assert summary["valid_adversarial"] <= min(summary["success"], summary["validity"])


def test_bad_input_raises(gen, latent, cnn_small):
    z, y = latent
    with pytest.raises(AttackInputError, match="needs y"):
        ALVA(gen, cnn_small)(z)
    with pytest.raises(AttackInputError, match="oracle"):
        ALVA(TinyUnconditional(), cnn_small)(z)
    with pytest.raises(AttackInputError, match="NaN"):
        ALVA(gen, cnn_small)(z * float("nan"), y)
    with pytest.raises(AttackInputError, match="eps must be"):
        ALVA(gen, cnn_small, eps=-1)
    with pytest.raises(AttackInputError, match="steps must be"):
        ALVA(gen, cnn_small, steps=0)
    with pytest.raises(AttackInputError, match="labels must be in"):
        ALVA(gen, cnn_small)(z, y + 10)
