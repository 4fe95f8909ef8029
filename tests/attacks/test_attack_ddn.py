"""DDN on the shipped MNIST classifiers: adversarial points whose L2 norm is what the result reports, no larger than
a PGD-L2 sweep finds at the same success, targets reached, bounds and any input shape honoured; its step-size
schedule and the random direction where the gradient vanishes."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import check_minimum_norm_result, distance, median_at_same_success, pgd_sweep_distances
from torch import nn

from alva.attacks import DDN, AttackInputError

SWEEP = [round(0.1 * k, 1) for k in range(1, 51)]  # PGD-L2 eps 0.1 ... 5.0


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


@pytest.mark.parametrize("name", ["mnist/cnn-small", "mnist/cnn-small-pgd"])
def test_ddn_finds_smaller_perturbations_than_a_pgd_sweep(name, load_zoo, batch):
    model = load_zoo(name)
    result = DDN(model, steps=100)(*batch)
    check_minimum_norm_result(model, *batch, result)
    assert result.success_rate >= 0.95
    ours, pgd = median_at_same_success(result.distances, pgd_sweep_distances(model, *batch, SWEEP))
    assert ours <= pgd, (ours, pgd)


def test_ddn_targeted_reaches_the_target(cnn_small, batch):
    x, y = batch
    target = (y + 3) % 10
    result = DDN(cnn_small, steps=100)(x, y, target=target)
    check_minimum_norm_result(cnn_small, x, y, result, target=target)
    assert result.success_rate >= 0.95
    untargeted = DDN(cnn_small, steps=100)(x, y)
    both = result.success & untargeted.success
    assert result.distances[both].median() > untargeted.distances[both].median()  # the nearest class is closer


def test_more_steps_shrink_the_perturbations(cnn_small, batch):
    x, y = batch
    short, long = DDN(cnn_small, steps=20)(x, y), DDN(cnn_small, steps=200)(x, y)
    both = short.success & long.success
    assert (long.distances[both] <= short.distances[both] + 1e-6).float().mean() > 0.8
    assert long.distances[both].median() < short.distances[both].median()


def test_ddn_honours_other_bounds_and_any_input_shape():
    torch.manual_seed(0)
    for shape in [(12,), (2, 5, 3)]:
        model = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 4))
        x = torch.rand(16, *shape) * 2 - 1
        y = model(x).argmax(1)
        result = DDN(model, steps=50, bounds=(-1.0, 1.0))(x, y)
        assert result.x_adv.shape == x.shape
        assert result.x_adv.min() >= -1 and result.x_adv.max() <= 1
        assert result.success.float().mean() > 0.8
        torch.testing.assert_close(result.distances[result.success].double(),
                                   distance("l2", result.x_adv, x)[result.success], rtol=1e-5, atol=1e-6)


class FlatBelowHalf(nn.Module):
    """Class 1 wins as soon as a pixel exceeds 0.5; below that the logits, and so the gradient, are constant."""

    def forward(self, x):
        excess = (x.flatten(1) - 0.5).relu().sum(1)
        return torch.stack([torch.zeros_like(excess), excess * 10 - 1e-3], dim=1)


def test_a_vanishing_gradient_gets_a_random_direction_that_the_seed_repeats():
    x, y = torch.zeros(4, 1, 3, 3), torch.zeros(4, dtype=torch.long)
    model = FlatBelowHalf()
    first, again = DDN(model, steps=60, seed=1)(x, y), DDN(model, steps=60, seed=1)(x, y)
    assert first.success.all()  # without a direction the perturbation would stay 0 and every sample fail
    assert torch.equal(first.x_adv, again.x_adv)
    assert not torch.equal(DDN(model, steps=60, seed=2)(x, y).x_adv, first.x_adv)


def test_the_step_size_falls_from_one_to_a_hundredth(cnn_small):
    attack = DDN(cnn_small, steps=100)
    sizes = [attack.step_size(k) for k in range(101)]
    assert sizes[0] == 1.0 and abs(sizes[100] - 0.01) < 1e-12 and abs(sizes[50] - 0.505) < 1e-12
    assert all(a >= b for a, b in zip(sizes, sizes[1:], strict=False))


def test_bad_settings_are_refused(cnn_small):
    for bad in [{"steps": 0}, {"init_epsilon": 0.0}, {"gamma": 0.0}, {"gamma": 1.0}]:
        with pytest.raises(AttackInputError):
            DDN(cnn_small, **bad)
