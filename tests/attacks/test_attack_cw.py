"""Carlini-Wagner L2 on the shipped MNIST classifiers: adversarial points whose L2 norm is what the result reports,
no larger than a PGD-L2 sweep finds at the same success, targets reached, bounds and any input shape honoured; the
binary search over c."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import check_minimum_norm_result, distance, median_at_same_success, pgd_sweep_distances, predict
from torch import nn

from alva.attacks import AttackInputError, CarliniWagner, margin
from alva.attacks.carlini_wagner import ConstantSearch

BUDGET = {"steps": 100, "binary_steps": 5}  # the budget measured in docs/capabilities/minimum-norm.md
SWEEP = [round(0.1 * k, 1) for k in range(1, 51)]  # PGD-L2 eps 0.1 ... 5.0
MODELS = ["mnist/cnn-small", "mnist/cnn-small-pgd"]


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


@pytest.fixture(scope="module")
def attacked(batch):
    """Per shipped model: the model, Carlini-Wagner's result on the batch and the PGD-L2 sweep's distances."""
    import alva.models

    out = {}
    for name in MODELS:
        model = alva.models.load(name)
        out[name] = model, CarliniWagner(model, **BUDGET)(*batch), pgd_sweep_distances(model, *batch, SWEEP)
    return out


# On mnist/cnn-small, 5 x 100 steps of Carlini-Wagner match a PGD-L2 sweep at 0.1 resolution to within 1% (1.31
# against 1.30 on these 50 images; DDN is below both): the slack of 2% says so. On mnist/cnn-small-pgd it is well below.
@pytest.mark.parametrize("name,least_success,slack",
                         [("mnist/cnn-small", 0.95, 1.02), ("mnist/cnn-small-pgd", 0.7, 1.0)])
def test_cw_finds_perturbations_no_larger_than_a_pgd_sweep(name, least_success, slack, attacked, batch):
    model, result, sweep = attacked[name]
    check_minimum_norm_result(model, *batch, result)
    assert result.success_rate >= least_success
    ours, pgd = median_at_same_success(result.distances, sweep)
    assert ours <= pgd * slack, (ours, pgd)


def test_cw_with_the_papers_learning_rate_is_weaker_on_100_steps(attacked, batch):
    model, tuned, _ = attacked["mnist/cnn-small"]
    paper = CarliniWagner(model, **BUDGET, lr=0.01)(*batch)  # the pixels at 0 and 1 barely move in tanh space
    check_minimum_norm_result(model, *batch, paper)
    assert 0.2 < paper.success_rate < tuned.success_rate


def test_cw_targeted_reaches_the_target(attacked, batch):
    model, untargeted, _ = attacked["mnist/cnn-small"]
    x, y = batch
    target = (y + 3) % 10
    result = CarliniWagner(model, **BUDGET)(x, y, target=target)
    check_minimum_norm_result(model, x, y, result, target=target)
    assert result.success_rate >= 0.9
    both = result.success & untargeted.success
    assert result.distances[both].median() > untargeted.distances[both].median()  # the nearest class is closer


def test_cw_confidence_buys_a_margin(attacked, batch):
    model, plain, _ = attacked["mnist/cnn-small"]
    x, y = batch
    result = CarliniWagner(model, **BUDGET, confidence=5.0)(x, y)
    assert result.success.float().mean() > 0.8
    with torch.no_grad():
        margins = margin(model(result.x_adv), y, False)
    assert (margins[result.success] >= 5.0).all()
    both = result.success & plain.success
    assert result.distances[both].median() > plain.distances[both].median()


def test_cw_honours_other_bounds_and_any_input_shape():
    torch.manual_seed(0)
    for shape in [(12,), (2, 5, 3)]:
        model = nn.Sequential(nn.Flatten(), nn.Linear(int(torch.tensor(shape).prod()), 4))
        x = torch.rand(16, *shape) * 2 - 1
        y = model(x).argmax(1)
        result = CarliniWagner(model, steps=50, binary_steps=4, bounds=(-1.0, 1.0))(x, y)
        assert result.x_adv.shape == x.shape
        assert result.x_adv.min() >= -1 and result.x_adv.max() <= 1
        assert result.success.float().mean() > 0.8
        torch.testing.assert_close(result.distances[result.success].double(),
                                   distance("l2", result.x_adv, x)[result.success], rtol=1e-5, atol=1e-6)


def test_cw_repeats_exactly_without_randomness(cnn_small, batch):
    x, y = batch[0][:20], batch[1][:20]
    first = CarliniWagner(cnn_small, steps=20, binary_steps=2)(x, y)
    second = CarliniWagner(cnn_small, steps=20, binary_steps=2, seed=123)(x, y)
    assert torch.equal(first.x_adv, second.x_adv) and torch.equal(first.distances, second.distances)


def test_abort_early_saves_steps(cnn_small, batch):
    x, y = batch[0][:20], batch[1][:20]
    aborted = CarliniWagner(cnn_small, **BUDGET)(x, y)
    full = CarliniWagner(cnn_small, **BUDGET, abort_early=False)(x, y)
    assert aborted.steps.sum() < full.steps.sum()
    assert (full.steps[predict(cnn_small, x) == y] == 500).all()


def test_the_binary_search_brackets_each_constant():
    search = ConstantSearch(3, 1.0, torch.device("cpu"))
    search.update(torch.tensor([True, False, False]))
    assert search.const.tolist() == [0.5, 10.0, 10.0]  # found: halfway down to 0; not found: ten times
    search.update(torch.tensor([False, True, False]))
    assert search.const.tolist() == [0.75, 5.5, 100.0]  # midpoints of the bounds found so far
    assert search.lower.tolist() == [0.5, 1.0, 10.0] and search.upper[:2].tolist() == [1.0, 10.0]


def test_bad_settings_are_refused(cnn_small):
    for bad in [{"steps": 0}, {"binary_steps": 0}, {"initial_const": 0.0}, {"lr": -1.0}, {"confidence": -1.0}]:
        with pytest.raises(AttackInputError):
            CarliniWagner(cnn_small, **bad)
