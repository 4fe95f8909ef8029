"""What an attack does to the model and to autograd: eval mode and frozen weights during the attack, every
module's mode and every weight's requires_grad restored after it (also when it raises), no weight gradient
left behind, and attacks that work inside torch.no_grad()."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alva.attacks import FGSM, PGD, AttackInputError, attack_mode


class Probe(nn.Module):
    """Wraps a model; records, at every forward, the modes, weight flags and grad mode it runs under.

    With ``fail_at`` it raises on that forward call (counting from 1).
    """

    def __init__(self, net: nn.Module, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = net
        self.fail_at = fail_at
        self.calls = 0
        self.seen: list[tuple[bool, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("probe: forward failed on purpose")
        any_training = any(m.training for m in self.net.modules())
        any_trainable = any(p.requires_grad for p in self.net.parameters())
        self.seen.append((any_training, any_trainable, torch.is_grad_enabled()))
        return self.net(x)


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def flags(model: nn.Module) -> list[bool]:
    return [p.requires_grad for p in model.parameters()]


def mixed_model(load_zoo) -> nn.Module:
    """cnn-small in train mode with some submodules in eval mode and some weights frozen."""
    model = load_zoo("mnist/cnn-small").train()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    convs[0].eval()
    for p in convs[1].parameters():
        p.requires_grad_(False)
    before_modes, before_flags = modes(model), flags(model)
    assert any(before_modes) and not all(before_modes)
    assert any(before_flags) and not all(before_flags)
    return model


ATTACKS = [
    pytest.param(lambda m: PGD(m, eps=0.1, steps=3, seed=0), id="pgd-linf"),
    pytest.param(lambda m: PGD(m, eps=1.0, steps=3, norm="l2", restarts=2, early_stop=True, seed=0),
                 id="pgd-l2"),
    pytest.param(lambda m: PGD(m, eps=0.1, steps=3, target="random", loss="margin", seed=0),
                 id="pgd-targeted"),
    pytest.param(lambda m: FGSM(m, eps=0.1), id="fgsm"),
]


@pytest.mark.parametrize("make", ATTACKS)
def test_train_mode_is_restored(load_zoo, attack_batch, make):
    model = load_zoo("mnist/cnn-small").train()
    probe = Probe(model).train()
    x, y = attack_batch
    make(probe)(x[:20], y[:20])
    assert all(modes(probe))
    assert all(flags(model))
    # During the attack everything was in eval mode with frozen weights, and gradients were on for the steps.
    assert probe.seen and not any(training for training, _, _ in probe.seen)
    assert not any(trainable for _, trainable, _ in probe.seen)
    assert any(grad_on for _, _, grad_on in probe.seen)


@pytest.mark.parametrize("make", ATTACKS)
def test_mixed_modes_and_flags_are_restored_and_no_weight_grad_appears(load_zoo, attack_batch, make):
    model = mixed_model(load_zoo)
    before_modes, before_flags = modes(model), flags(model)
    before_weights = [p.detach().clone() for p in model.parameters()]
    x, y = attack_batch
    res = make(model)(x[:20], y[:20])
    assert modes(model) == before_modes
    assert flags(model) == before_flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before_weights, strict=True))
    # In train mode the model would not be the one that was attacked; the result matches eval mode.
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(res.clean_logits, model(x[:20]))


def test_eval_mode_stays_eval(cnn_small, attack_batch):
    x, y = attack_batch
    before_modes, before_flags = modes(cnn_small), flags(cnn_small)
    PGD(cnn_small, eps=0.1, steps=2, seed=0)(x[:10], y[:10])
    assert modes(cnn_small) == before_modes and not any(before_modes)
    assert flags(cnn_small) == before_flags


@pytest.mark.parametrize("fail_at", [1, 2, 4])
def test_modes_and_flags_are_restored_when_the_attack_raises(load_zoo, attack_batch, fail_at):
    """fail_at 1: the clean forward; 2: the first gradient step; 4: a later step."""
    model = mixed_model(load_zoo)
    before_modes, before_flags = modes(model), flags(model)
    probe = Probe(model, fail_at=fail_at)
    x, y = attack_batch
    with pytest.raises(RuntimeError, match="on purpose"):
        PGD(probe, eps=0.1, steps=5, seed=0)(x[:10], y[:10])
    assert probe.calls == fail_at
    assert modes(model) == before_modes
    assert flags(model) == before_flags
    assert all(p.grad is None for p in model.parameters())


def test_modes_and_flags_are_restored_after_an_input_error_inside_the_attack(load_zoo, attack_batch):
    """Labels out of range are found after the clean forward, inside the attack's eval mode."""
    model = mixed_model(load_zoo)
    before_modes, before_flags = modes(model), flags(model)
    x, y = attack_batch
    with pytest.raises(AttackInputError):
        PGD(model, eps=0.1, steps=2)(x[:4], torch.tensor([0, 1, 2, 10]))
    with pytest.raises(AttackInputError):
        PGD(model, eps=0.1, steps=2)(x[:4], y[:4], torch.tensor([0, 1, 2, 12]))
    assert modes(model) == before_modes
    assert flags(model) == before_flags


def test_attack_mode_context_manager(load_zoo):
    model = mixed_model(load_zoo)
    before_modes, before_flags = modes(model), flags(model)
    with attack_mode(model) as m:
        assert m is model
        assert not any(modes(model)) and not any(flags(model))
        assert torch.is_grad_enabled()
    assert modes(model) == before_modes and flags(model) == before_flags
    with pytest.raises(KeyError):
        with attack_mode(model):
            raise KeyError("inside")
    assert modes(model) == before_modes and flags(model) == before_flags


@pytest.mark.parametrize("norm,eps", [("linf", 0.3), ("l2", 2.5)])
def test_attack_inside_no_grad(cnn_small, attack_batch, norm, eps):
    x, y = attack_batch
    x, y = x[:100], y[:100]
    attack = PGD(cnn_small, eps=eps, steps=20, norm=norm, seed=0)
    outside = attack(x, y)
    with torch.no_grad():
        inside = attack(x, y)
        assert not torch.is_grad_enabled()
    assert torch.equal(inside.x_adv, outside.x_adv)
    assert torch.equal(inside.success, outside.success)
    assert inside.success_rate > 0.8
    with torch.no_grad():
        assert (cnn_small(inside.x_adv).argmax(1) != y).double().mean() > 0.8
    assert not inside.x_adv.requires_grad


def test_fgsm_inside_no_grad(cnn_small, attack_batch):
    x, y = attack_batch
    outside = FGSM(cnn_small, eps=0.2)(x, y)
    with torch.no_grad():
        inside = FGSM(cnn_small, eps=0.2)(x, y)
    assert torch.equal(inside.x_adv, outside.x_adv)
    assert not torch.equal(inside.x_adv, x)


def test_input_that_requires_grad_is_left_alone(cnn_small, attack_batch):
    x, y = attack_batch
    x = x[:10].clone().requires_grad_(True)
    res = PGD(cnn_small, eps=0.1, steps=2, seed=0)(x, y[:10])
    assert x.grad is None
    assert not res.x_adv.requires_grad
    assert (res.x_adv - x.detach()).abs().max() <= 0.1 + 1e-6
