"""The transfer-enhancing FGSM family (MI, DI, TI, NI, VMI) and the ensemble of substitutes: each ingredient
switched off gives the plain attack, the ball and the bounds hold, accuracy falls on real MNIST, seeded runs
repeat, any image shape works, queries are counted exactly, and the loss ensemble's gradient is the mean of its
members'."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alva.models
from alva.attacks import (
    DIFGSM,
    MIFGSM,
    NIFGSM,
    PGD,
    TIFGSM,
    VMIFGSM,
    AttackInputError,
    EnsembleModel,
    TransferFGSM,
    attack_mode,
)
from alva.attacks.ensemble import logits_and_loss
from alva.attacks.losses import cross_entropy, margin
from alva.attacks.transfer_fgsm import diverse_inputs, gaussian_kernel, gaussian_weights, smooth_per_channel

EPS = 0.3
FAMILY = [MIFGSM, DIFGSM, TIFGSM, NIFGSM, VMIFGSM]


def small(cls, model, **settings):
    """An attack of the family with a small budget (VMI with 4 neighbours)."""
    extra = {"variance_samples": 4} if cls is VMIFGSM else {}
    return cls(model, **{"eps": EPS, "seed": 0, **extra, **settings})


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


def assert_same(a, b):
    for field in ("x_adv", "success", "steps", "queries", "adv_logits"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("steps", [1, 4, 10])
def test_mi_fgsm_with_decay_zero_is_i_fgsm(cnn_small, batch, steps):
    x, y = batch
    i_fgsm = PGD(cnn_small, eps=EPS, alpha=EPS / steps, steps=steps, random_start=False)
    mi = MIFGSM(cnn_small, eps=EPS, steps=steps, decay=0.0)
    momentum, plain = mi(x, y), i_fgsm(x, y)
    # PGD from the clean points takes its first gradient in the clean forward pass: one pass fewer.
    plain.queries += 1
    assert_same(momentum, plain)
    with attack_mode(cnn_small):  # the iterates themselves, without the engine's choice of the best one
        assert torch.equal(mi.iterate(x, y, x), i_fgsm.iterate(x, y, x))


def test_momentum_changes_the_iterates(cnn_small, batch):
    x, y = batch
    with attack_mode(cnn_small):
        plain = MIFGSM(cnn_small, eps=EPS, decay=0.0).iterate(x, y, x)
        assert not torch.equal(MIFGSM(cnn_small, eps=EPS).iterate(x, y, x), plain)


@pytest.mark.parametrize("cls", [DIFGSM, MIFGSM])
def test_input_diversity_with_probability_zero_is_the_plain_attack(cnn_small, batch, cls):
    x, y = batch
    plain = MIFGSM(cnn_small, eps=EPS, decay=0.0 if cls is DIFGSM else 1.0, seed=0)
    assert_same(cls(cnn_small, eps=EPS, diversity_prob=0.0, seed=0)(x, y), plain(x, y))
    assert not torch.equal(cls(cnn_small, eps=EPS, diversity_prob=0.5, seed=0)(x, y).x_adv, plain(x, y).x_adv)


@pytest.mark.parametrize("cls", [TIFGSM, MIFGSM])
def test_smoothing_with_kernel_size_one_is_the_plain_attack(cnn_small, batch, cls):
    x, y = batch
    plain = MIFGSM(cnn_small, eps=EPS, decay=0.0 if cls is TIFGSM else 1.0)
    assert_same(cls(cnn_small, eps=EPS, kernel_size=1)(x, y), plain(x, y))
    assert not torch.equal(cls(cnn_small, eps=EPS, kernel_size=5)(x, y).x_adv, plain(x, y).x_adv)


def test_the_gaussian_kernel_sums_to_one_and_smooths_each_channel_apart():
    kernel = gaussian_kernel(7, 3.0)
    assert kernel.shape == (7, 7) and kernel.sum().item() == pytest.approx(1.0)
    assert torch.equal(kernel, kernel.flip(0)) and torch.equal(kernel, kernel.T) and kernel.argmax() == 24
    grad = torch.zeros(1, 2, 9, 9)
    grad[0, 0, 4, 4] = 1.0  # an impulse in channel 0 only
    smoothed = smooth_per_channel(grad, gaussian_weights(7, 3.0))
    torch.testing.assert_close(smoothed[0, 0, 1:8, 1:8], kernel)
    assert smoothed[0, 1].abs().max() == 0 and smoothed[0, 0, 0].abs().max() == 0
    grad = torch.randn(3, 4, 12, 7)  # the zero-padded convolution of each channel apart, on any shape
    conv = torch.nn.functional.conv2d(grad, kernel[None, None].expand(4, 1, 7, 7), padding=3, groups=4)
    torch.testing.assert_close(smooth_per_channel(grad, gaussian_weights(7, 3.0)), conv, rtol=1e-5, atol=1e-6)


def test_input_diversity_shrinks_and_pads_inside_the_image():
    x = torch.rand(6, 3, 20, 13)
    u = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.99, 0.99, 0.99], [0.9, 0.5, 0.5, 0.5],
                      [0.1, 0.5, 1 - 1e-6, 0.0], [0.2, 0.3, 0.7, 0.2], [0.99, 0.1, 0.1, 0.1]])
    out = diverse_inputs(x, u, 0.5, 0.5)
    assert out.shape == x.shape
    assert torch.equal(out[2], x[2]) and torch.equal(out[5], x[5])  # u[:, 0] >= 0.5: left as it is
    first = out[0]  # smallest size (10 x 6), at the top left: the rest is zero padding
    assert first[:, 10:].abs().max() == 0 and first[:, :, 6:].abs().max() == 0 and first[:, :10, :6].abs().min() > 0
    third = out[3]  # pushed to the bottom: zero rows on top
    assert third[:, :5].abs().max() == 0 and third[:, -1].abs().sum() > 0
    assert torch.equal(diverse_inputs(x, u, 0.0, 0.5), x)


def test_input_diversity_is_a_bilinear_resize_and_a_zero_pad():
    x = torch.rand(1, 2, 28, 28, generator=torch.Generator().manual_seed(0))
    u = torch.tensor([[0.1, 0.5, 0.25, 0.75]])  # size floor((0.9 + 0.1 * 0.5) * 28) = 26, top 0, left 2
    resized = torch.nn.functional.interpolate(x, size=(26, 26), mode="bilinear", align_corners=False)
    expected = torch.nn.functional.pad(resized, [2, 0, 0, 2])
    torch.testing.assert_close(diverse_inputs(x, u, 0.5, 0.9), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", FAMILY)
@pytest.mark.parametrize("norm, eps", [("linf", 0.3), ("l2", 2.0)])
def test_inside_the_ball_and_the_bounds(cls, norm, eps, cnn_small, batch):
    x, y = batch
    r = small(cls, cnn_small, norm=norm, eps=eps)(x, y)
    distance = (r.x_adv - x).flatten(1).abs().amax(1) if norm == "linf" else (r.x_adv - x).flatten(1).norm(dim=1)
    assert (distance <= eps * (1 + 1e-5)).all()
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


@pytest.mark.parametrize("cls", FAMILY)
def test_accuracy_falls_on_real_mnist(cls, cnn_small, batch):
    x, y = batch
    with torch.no_grad():
        clean = (cnn_small(x).argmax(1) == y).float().mean().item()
    r = small(cls, cnn_small, eps=0.15)(x, y)
    with torch.no_grad():
        robust = (cnn_small(r.x_adv).argmax(1) == y).float().mean().item()
    assert clean > 0.9 and robust < clean - 0.4


def test_mi_di_ti_is_one_call_and_lowers_accuracy(cnn_small, batch):
    x, y = batch
    r = MIFGSM(cnn_small, eps=0.15, diversity_prob=0.5, kernel_size=5, seed=0)(x, y)
    assert r.success_rate > 0.5 and (r.x_adv - x).abs().max() <= 0.15 + 1e-6


@pytest.mark.parametrize("cls", [DIFGSM, VMIFGSM])
def test_seeded_runs_repeat_and_other_seeds_differ(cls, cnn_small, batch):
    x, y = batch
    assert_same(small(cls, cnn_small)(x, y), small(cls, cnn_small)(x, y))
    assert not torch.equal(small(cls, cnn_small)(x, y).x_adv, small(cls, cnn_small, seed=1)(x, y).x_adv)


class Counted(nn.Module):
    """Counts the rows it sees; a tiny classifier for any image shape."""

    def __init__(self, features: int, classes: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(features, classes)
        self.seen = 0

    def forward(self, x):
        self.seen += len(x)
        return self.linear(x.flatten(1))


@pytest.mark.parametrize("cls", FAMILY)
def test_queries_are_counted_exactly(cls):
    x, y = torch.rand(5, 2, 9, 7), torch.arange(5) % 4
    model = Counted(2 * 9 * 7)
    attack = small(cls, model, steps=3, kernel_size=3)
    r = attack(x, y)
    assert int(r.queries.sum()) == model.seen  # every row the model saw is counted, for the sample it belongs to
    expected = 1 + 3 * attack.queries_per_step + 1  # clean, the steps, the last iterate
    assert attack.queries_per_step == {MIFGSM: 1, DIFGSM: 1, TIFGSM: 1, NIFGSM: 2, VMIFGSM: 5}[cls]
    if cls is DIFGSM:  # plus one pass at the iterate for each step in which the image was moved
        assert (r.queries >= expected).all() and (r.queries <= expected + 3).all() and (r.queries > expected).any()
    else:
        assert (r.queries == expected).all()


def test_each_sample_is_charged_for_its_own_moved_steps():
    x, y = torch.rand(8, 1, 10, 10), torch.arange(8) % 4
    full = DIFGSM(Counted(100), eps=0.1, steps=4, seed=3)(x, y)
    alone = DIFGSM(Counted(100), eps=0.1, steps=4, seed=3)(x[2:3], y[2:3])
    assert alone.queries.item() == full.queries[2].item()


@pytest.mark.parametrize("shape", [(3, 17, 11), (1, 5, 30), (4, 2, 2)])
def test_any_image_shape(shape):
    x, y = torch.rand(6, *shape), torch.arange(6) % 4
    model = Counted(int(torch.tensor(shape).prod()))
    r = MIFGSM(model, eps=0.05, diversity_prob=0.7, kernel_size=5, variance_samples=2, nesterov=True, seed=0)(x, y)
    assert r.x_adv.shape == x.shape and (r.x_adv - x).abs().max() <= 0.05 + 1e-6
    assert r.success.any() or (r.adv_logits != r.clean_logits).any()


def test_flat_inputs_work_without_the_image_transforms():
    x, y = torch.rand(6, 20), torch.arange(6) % 4
    model = Counted(20)
    r = NIFGSM(model, eps=0.1, variance_samples=2, seed=0)(x, y)
    assert (r.x_adv - x).abs().max() <= 0.1 + 1e-6
    with pytest.raises(AttackInputError, match="N x C x H x W"):
        DIFGSM(model)(x, y)
    with pytest.raises(AttackInputError, match="N x C x H x W"):
        TIFGSM(model)(x, y)


def test_bad_settings_are_refused(cnn_small):
    for settings, message in [({"kernel_size": 4}, "odd"), ({"diversity_prob": 1.5}, "diversity_prob"),
                              ({"resize_rate": 0.0}, "resize_rate"), ({"variance_samples": -1}, "variance_samples"),
                              ({"decay": -1.0}, "decay")]:
        with pytest.raises(AttackInputError, match=message):
            TransferFGSM(cnn_small, **settings)


@pytest.fixture(scope="module")
def members():
    """Three shipped classifiers of their own (an ensemble puts its members in attack mode)."""
    return [alva.models.load("mnist/cnn-small"), alva.models.load("mnist/softmax"), alva.models.load("mnist/mlp")]


@pytest.mark.parametrize("objective", [cross_entropy, margin])
def test_the_loss_ensemble_gradient_is_the_mean_of_the_members_gradients(members, batch, objective):
    x, y = batch
    ensemble = EnsembleModel(members, mode="loss")

    def gradient(model):
        xg = x.clone().requires_grad_(True)
        _, loss = logits_and_loss(model, xg, lambda logits: objective(logits, y, False))
        return torch.autograd.grad(loss.sum(), xg)[0]

    with attack_mode(ensemble):
        mean = torch.stack([gradient(m) for m in members]).mean(dim=0)
        scale = mean.abs().max().item()
        torch.testing.assert_close(gradient(ensemble), mean, rtol=1e-4, atol=1e-5 * scale)
        xg = x.clone().requires_grad_(True)  # the loss of the ensemble's output is another thing
        naive = torch.autograd.grad(objective(ensemble(xg), y, False).sum(), xg)[0]
        assert (naive - mean).abs().max() > 0.01 * scale
        probabilities = torch.stack([m(x).softmax(1) for m in members]).mean(dim=0)
        torch.testing.assert_close(ensemble(x), probabilities.log(), rtol=1e-5, atol=1e-5)


def test_the_logit_ensemble_averages_logits_and_attacks_as_one_model(members, batch):
    x, y = batch
    ensemble = EnsembleModel(members)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), torch.stack([m(x) for m in members]).mean(0))
    r = MIFGSM(ensemble, eps=0.2, seed=0)(x, y)
    assert r.success_rate > 0.8 and (r.x_adv - x).abs().max() <= 0.2 + 1e-6
    with pytest.raises(AttackInputError, match="mode"):
        EnsembleModel(members, mode="votes")
    with pytest.raises(AttackInputError, match="at least one"):
        EnsembleModel([])


def test_a_loss_ensemble_step_follows_the_mean_gradient(members, batch):
    x, y = batch
    ensemble = EnsembleModel(members, mode="loss")
    with attack_mode(ensemble):
        grads = []
        for m in members:
            xg = x.clone().requires_grad_(True)
            grads.append(torch.autograd.grad(cross_entropy(m(xg), y, False).sum(), xg)[0])
        expected = (x + 0.1 * torch.stack(grads).mean(0).sign()).clamp(0, 1)
        step = MIFGSM(ensemble, eps=0.1, steps=1).iterate(x, y, x)
    assert (step != expected).float().mean() < 1e-3  # signs of near-zero entries may round either way
