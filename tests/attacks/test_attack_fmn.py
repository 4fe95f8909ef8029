"""FMN (alva.attacks.fmn) on real MNIST images and the shipped models: adversarial points whose distance is the
one reported under each norm (L0 in pixels, as the reports count it), the box kept, FMN-L2 and FMN-L-inf at least
as close as PGD sweeps at the same success, targeted runs that reach the target; and on a linear model, where the
closest adversarial point is known."""

from __future__ import annotations

import math

import pytest
import torch
from attack_helpers import distance, pgd_sweep, predict
from torch import nn

from alva.attacks import FMN, AttackInputError, MinimumNormResult
from alva.attacks.fmn import cosine_annealing
from alva.attacks.sparse import pixel_l0

CHANGED = 1e-6  # the reports' L0 threshold (alva.evaluation.robustness.CHANGED)


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


class Grey(nn.Module):
    """A model of 3-channel images: ``inner`` on their channel mean."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner(images.mean(dim=1, keepdim=True))


class Signed(nn.Module):
    """A model of images in [-1, 1]: ``inner`` (which takes [0, 1]) after rescaling."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inner((images + 1) / 2)


def measured(norm: str, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if norm == "l0":
        return pixel_l0(x_adv - x, 0.0, CHANGED).double()
    return distance(norm, x_adv, x)


def test_cosine_annealing_runs_from_start_to_end():
    assert cosine_annealing(1.0, 0.01, 0, 100) == 1.0
    assert cosine_annealing(1.0, 0.01, 50, 100) == pytest.approx(0.505)
    assert cosine_annealing(1.0, 0.01, 100, 100) == pytest.approx(0.01)


@pytest.mark.parametrize("norm", ["l0", "l1", "l2", "linf"])
def test_points_are_adversarial_at_the_distance_reported(cnn_small, batch, norm):
    x, y = batch
    result = FMN(cnn_small, norm=norm, steps=50)(x, y)
    assert isinstance(result, MinimumNormResult) and result.norm == norm
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert result.success_rate >= 0.95
    broken = result.success
    assert (predict(cnn_small, result.x_adv)[broken] != y[broken]).all()
    torch.testing.assert_close(result.distances[broken].double(), measured(norm, result.x_adv, x)[broken],
                               rtol=1e-5, atol=1e-5)
    assert torch.isinf(result.distances[~broken]).all() and torch.equal(result.x_adv[~broken], x[~broken])
    assert (result.steps[broken] <= 50).all() and (result.queries >= 1).all()


RADII = {"l2": [0.25 * i for i in range(1, 17)], "linf": [0.02 * i for i in range(1, 21)]}


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("model_name", ["mnist/cnn-small", "mnist/cnn-small-pgd"])
def test_at_least_as_close_as_a_pgd_sweep(load_zoo, batch, model_name, norm):
    """Per sample, PGD's smallest breaking radius on a grid (16 radii up to 4 under L2, 20 up to 0.4 under L-inf,
    20 steps each); FMN (100 steps) breaks at least as many samples at a median distance no larger (failures count
    as infinitely far in both medians)."""
    x, y = batch
    model = load_zoo(model_name)
    sweep = pgd_sweep(model, x, y, norm, RADII[norm])
    result = FMN(model, norm=norm, steps=100)(x, y)
    assert result.success.sum() >= (sweep < math.inf).sum()
    assert result.distances.median() <= sweep.median()


def test_l0_counts_pixels_not_channels(cnn_small, batch):
    """On 3-channel images (the model sees their channel mean) a changed pixel counts once."""
    x, y = batch
    grey = Grey(cnn_small)
    rgb = x.expand(-1, 3, -1, -1).contiguous()
    result = FMN(grey, norm="l0", steps=50)(rgb, y)
    broken = result.success
    assert broken.float().mean() >= 0.9
    delta = result.x_adv - rgb
    pixels = (delta.abs().amax(dim=1) > CHANGED).flatten(1).sum(dim=1).float()
    assert torch.equal(result.distances[broken], pixels[broken])
    entries = (delta.abs() > CHANGED).flatten(1).sum(dim=1).float()
    assert (entries[broken] > pixels[broken]).any()  # several channels of a pixel did change


def test_targeted_reaches_the_target(cnn_small, batch):
    x, y = batch
    target = (y + 3) % 10
    result = FMN(cnn_small, norm="l2", steps=100)(x, y, target=target)
    assert result.success_rate >= 0.95
    assert torch.equal(result.target, target)
    assert (predict(cnn_small, result.x_adv)[result.success] == target[result.success]).all()
    untargeted = FMN(cnn_small, norm="l2", steps=100)(x, y)
    both = result.success & untargeted.success
    assert (result.distances[both] >= untargeted.distances[both] * 0.9).float().mean() >= 0.9  # a target is farther


def test_on_a_linear_model_the_distance_is_the_distance_to_the_boundary():
    """Flat inputs (N x D) in wide bounds and two classes: the closest adversarial point of a linear classifier
    is at |z_0 - z_1| / ||w_0 - w_1|| under L2, and at |z_0 - z_1| / ||w_0 - w_1||_1 under L-inf; FMN finds it
    within 2%."""
    torch.manual_seed(0)
    model = nn.Linear(20, 2)
    x = torch.rand(30, 20) * 2 - 1
    with torch.no_grad():
        z = model(x)
        gap = (z[:, 0] - z[:, 1]).abs()
    y = z.argmax(dim=1)
    normal = model.weight[0] - model.weight[1]
    for norm, dual in (("l2", 2), ("linf", 1)):
        closest = gap / torch.linalg.vector_norm(normal.detach(), ord=dual)
        result = FMN(model, norm=norm, steps=200, bounds=(-10.0, 10.0))(x, y)
        assert result.success.all()
        assert (result.distances >= closest * (1 - 1e-4)).all()
        assert (result.distances <= closest * 1.02).all()


def test_bounds_are_kept(cnn_small, batch):
    """Images in [-1, 1] (the model rescales them): every returned point stays inside."""
    x, y = batch
    model = Signed(cnn_small)
    for norm in ("linf", "l1"):
        result = FMN(model, norm=norm, steps=30, bounds=(-1.0, 1.0))(x * 2 - 1, y)
        assert result.x_adv.min() >= -1 and result.x_adv.max() <= 1 and result.success_rate >= 0.9


def test_samples_misclassified_before_the_attack_stay_at_zero(cnn_small, batch):
    x, y = batch
    wrong = (y + 1) % 10
    result = FMN(cnn_small, norm="l2", steps=5)(x[:4], wrong[:4])
    clean_wrong = predict(cnn_small, x[:4]) != wrong[:4]
    assert clean_wrong.all() and (result.distances == 0).all() and torch.equal(result.x_adv, x[:4])
    assert (result.steps == 0).all()


@pytest.mark.parametrize("settings", [{"norm": "l3"}, {"steps": 0}, {"alpha_init": 0.0}, {"gamma_init": 1.0},
                                      {"gamma_final": 0.1}])
def test_bad_settings_raise(cnn_small, settings):
    with pytest.raises((AttackInputError, ValueError)):
        FMN(cnn_small, **settings)
