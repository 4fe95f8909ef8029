"""DeepFool: on a linear model it lands just past the exact closest boundary in one step, at the exact minimal
distance; on a CNN its points are adversarial at the distances it reports."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import distance, predict

from alva.attacks import AttackInputError, DeepFool, build
from alva.attacks.norms import get_norm

DUAL = {"l2": "l2", "linf": "l1"}


def exact_boundary(model, x, y, norm):
    """For a linear model: per sample, the distance to the closest other class's hyperplane (no box) and the
    logit gap to that class."""
    weight, bias = model.net[1].weight.double(), model.net[1].bias.double()
    logits = x.flatten(1).double() @ weight.T + bias
    gap = logits - logits.gather(1, y[:, None])  # n x classes, <= 0 where correctly classified
    w = weight[None] - weight[y][:, None]  # n x classes x pixels
    dual = get_norm(DUAL[norm]).measure(w.flatten(0, 1)).view(gap.shape)
    dist = (gap.abs() / dual).scatter(1, y[:, None], float("inf"))
    closest = dist.argmin(1)
    return dist.gather(1, closest[:, None]).squeeze(1), gap.gather(1, closest[:, None]).squeeze(1).abs()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_on_a_linear_model_one_step_lands_just_past_the_exact_boundary(softmax_model, attack_batch, norm):
    x, y = attack_batch
    overshoot = 1e-3
    # Wide bounds: the box never binds, so the exact answer is the closed-form distance to the hyperplane.
    result = DeepFool(softmax_model, norm=norm, overshoot=overshoot, bounds=(-10.0, 11.0))(x, y)
    correct = predict(softmax_model, x) == y
    assert result.success.all()
    assert (result.steps[correct] == 1).all()
    exact, gap = exact_boundary(softmax_model, x, y, norm)
    measured = distance(norm, result.x_adv, x)
    torch.testing.assert_close(measured[correct], (1 + overshoot) * exact[correct], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(result.distances.double(), measured, rtol=1e-5, atol=1e-6)
    # Just past the boundary: the margin of the closest class is positive and about overshoot times its gap.
    with torch.no_grad():
        logits = softmax_model(result.x_adv).double()
    margin = logits.scatter(1, y[:, None], float("-inf")).amax(1) - logits.gather(1, y[:, None]).squeeze(1)
    assert (margin[correct] > 0).all()
    assert (margin[correct] <= 1.01 * overshoot * gap[correct] + 1e-4).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_the_box_only_lengthens_the_way(softmax_model, attack_batch, norm):
    x, y = attack_batch
    result = DeepFool(softmax_model, norm=norm)(x, y)
    correct = predict(softmax_model, x) == y
    assert result.success.all() and result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    exact, _ = exact_boundary(softmax_model, x, y, norm)
    assert (result.distances[correct].double() >= exact[correct] * (1 - 1e-5)).all()


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_on_a_cnn_the_points_are_adversarial_at_the_reported_distance(cnn_small, attack_batch, norm):
    x, y = attack_batch
    result = build("deepfool", cnn_small, norm=norm)(x, y)
    assert result.success.float().mean() >= 0.99
    broken = result.success & (predict(cnn_small, x) == y)
    assert (predict(cnn_small, result.x_adv)[broken] != y[broken]).all()
    torch.testing.assert_close(result.distances[broken].double(), distance(norm, result.x_adv, x)[broken],
                               rtol=1e-5, atol=1e-6)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert (result.steps <= 50).all() and result.steps.float().mean() < 5  # each sample stops when it crosses


def test_a_target_is_reached(softmax_model, attack_batch):
    x, y = attack_batch
    target = (y + 1) % 10
    result = DeepFool(softmax_model, norm="l2")(x, y, target)
    assert result.success.float().mean() >= 0.99
    assert (predict(softmax_model, result.x_adv)[result.success] == target[result.success]).all()


def test_eps_bounds_the_success(cnn_small, attack_batch):
    x, y = attack_batch
    free = DeepFool(cnn_small, norm="l2")(x, y)
    bounded = DeepFool(cnn_small, norm="l2", eps=1.0)(x, y)
    assert torch.equal(bounded.success, free.distances <= 1.0 + 1e-5)
    assert (distance("l2", bounded.x_adv, x) <= 1.0 + 1e-5).all()


@pytest.mark.parametrize("settings", [{"norm": "l1"}, {"candidates": 1}, {"overshoot": -0.1}, {"steps": 0}])
def test_bad_settings_are_refused(cnn_small, settings):
    with pytest.raises(AttackInputError):
        DeepFool(cnn_small, **settings)
