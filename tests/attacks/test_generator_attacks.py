"""Generator attacks: AdvGAN's bound holds for any generator output, the Attack contract, files, and the
unrestricted generator attack with oracle validity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alva.models
from alva.attacks import AttackInputError
from alva.attacks.generator_attacks import (
    AdvGANAttack,
    PerturbationGenerator,
    UnrestrictedGeneratorAttack,
    advgan_summary,
    generator_attack_summary,
    load_perturbation_generator,
    save_perturbation_generator,
)


class Wild(nn.Module):
    """A 'generator' whose raw output is huge, infinite and NaN: the bound must hold anyway."""

    def forward(self, x):
        out = torch.randn_like(x) * 1e6
        out[:, :, 0, 0] = float("inf")
        out[:, :, 0, 1] = float("-inf")
        out[:, :, 1, 1] = float("nan")
        return out


@pytest.fixture(scope="module")
def batch(attack_batch):
    return attack_batch[0][:64], attack_batch[1][:64]


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0])
@pytest.mark.parametrize("make", [lambda: PerturbationGenerator(width=8), Wild])
def test_bound_holds(cnn_small, batch, eps, make):
    x, y = batch
    torch.manual_seed(0)
    result = AdvGANAttack(cnn_small, make(), eps)(x, y)
    assert torch.isfinite(result.x_adv).all()
    assert (result.x_adv - x).abs().max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    if eps == 0:
        assert torch.equal(result.x_adv, x)


def test_bound_holds_in_other_bounds(cnn_small, batch):
    x, y = batch
    result = AdvGANAttack(cnn_small, Wild(), 0.2, bounds=(0.1, 0.9))(x.clamp(0.1, 0.9), y)
    assert result.x_adv.min() >= 0.1 and result.x_adv.max() <= 0.9


def test_attack_contract(cnn_small, batch):
    x, y = batch
    g = PerturbationGenerator(width=8).train()
    result = AdvGANAttack(cnn_small, g, 0.3)(x, y)
    assert result.x_adv.shape == x.shape and len(result) == len(x)
    assert (result.queries == 1).all() and (result.steps == 1).all()
    assert torch.equal(result.success, result.adv_pred != y)
    assert g.training and all(p.requires_grad for p in g.parameters())  # restored
    summary = advgan_summary(result, x, y, oracle=alva.models.load("mnist/mlp"))
    assert 0 <= summary["validity"] <= 1 and summary["linf_max"] <= 0.3 + 1e-6


def test_targeted_generator_needs_targets(cnn_small, batch):
    x, y = batch
    targeted = PerturbationGenerator(width=8, num_classes=10)
    with pytest.raises(AttackInputError):
        AdvGANAttack(cnn_small, targeted, 0.3)(x, y)
    with pytest.raises(AttackInputError):
        AdvGANAttack(cnn_small, PerturbationGenerator(width=8), 0.3, target="random")
    result = AdvGANAttack(cnn_small, targeted, 0.3, target="random", seed=0)(x, y)
    assert (result.target != y).all()
    assert torch.equal(result.success, result.adv_pred == result.target)
    with pytest.raises(AttackInputError):
        AdvGANAttack(cnn_small, targeted, -0.1)


def test_save_load_roundtrip(tmp_path, cnn_small, batch):
    x, y = batch
    g = PerturbationGenerator(width=8, num_classes=10).eval()
    save_perturbation_generator(g, {"eps": 0.2}, tmp_path / "generator.safetensors")
    loaded = load_perturbation_generator(tmp_path)
    assert loaded.card["eps"] == 0.2 and loaded.targeted
    t = (y + 1) % 10
    a = AdvGANAttack(cnn_small, g, 0.2)(x, y, target=t)
    b = AdvGANAttack(cnn_small, loaded)(x, y, target=t)  # eps from the card
    assert torch.equal(a.x_adv, b.x_adv)
    with pytest.raises(ValueError):
        load_perturbation_generator(alva.models.zoo.resolve("mnist/cnn-small"))


def test_unrestricted_with_the_original_generator(cnn_small):
    g = alva.models.load_generator("mnist/acwgan-gp")
    attack = UnrestrictedGeneratorAttack(g, cnn_small, oracle=alva.models.load("mnist/mlp"), reference=g)
    result = attack.sample(200, seed=0)
    assert torch.equal(result.x, result.x_adv)
    assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) != result.y)
    summary = generator_attack_summary(result)
    assert summary["validity"] > 0.9 and summary["success"] < 0.2 and summary["pixel_l2"] == 0
    assert (result.queries == 1).all()
    with pytest.raises(AttackInputError):
        UnrestrictedGeneratorAttack(alva.models.load_generator("mnist/wgan-gp"), cnn_small)
    with pytest.raises(AttackInputError):
        attack(result.z, result.y[:3])
