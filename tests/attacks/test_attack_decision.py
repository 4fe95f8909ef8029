"""Decision-based attacks (HopSkipJump, Boundary, Sign-OPT): the label-only view of the model, exact query counts
under a hard budget, distances that fall as the budget grows on real MNIST images, targeted runs, seeded
repeatability and any image shape."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import distance, predict
from torch import nn

from alva.attacks import AttackInputError, BoundaryAttack, HopSkipJump, LabelOnly, SignOPT

# Each attack and norm with a small budget per test.
ATTACKS = {
    "hsj-l2": (HopSkipJump, {"norm": "l2"}),
    "hsj-linf": (HopSkipJump, {"norm": "linf"}),
    "boundary": (BoundaryAttack, {}),
    "sign-opt": (SignOPT, {}),
}


def make(name: str, model: nn.Module, max_queries: int, **settings):
    cls, defaults = ATTACKS[name]
    return cls(model, max_queries, **{"seed": 0, **defaults, **settings})


@pytest.fixture(scope="module")
def images(attack_batch):
    x, y = attack_batch
    return x[::20][:10], y[::20][:10]


class Counting(nn.Module):
    """Counts the rows it is given and whether any call asked for a gradient."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows, self.grad_calls = model, 0, 0

    def forward(self, x):
        self.rows += len(x)
        self.grad_calls += int(x.requires_grad)
        return self.model(x)


class Leaky(nn.Module):
    """Logits that would help an attack that could read them: the clean margin pushed far from the boundary."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        logits = self.model(x)
        return logits * 7.0 + logits.softmax(1) * 3.0


def test_label_only_gives_one_hot_labels_and_no_gradient(cnn_small, images):
    x, _ = images
    wrapped = LabelOnly(cnn_small)
    inputs = x.clone().requires_grad_(True)
    out = wrapped(inputs)
    assert not out.requires_grad and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0} and torch.equal(out.sum(1), torch.ones(len(x)))
    assert torch.equal(out.argmax(1), predict(cnn_small, x))
    # Two models with the same labels but different scores look identical through the wrapper.
    assert torch.equal(LabelOnly(Leaky(cnn_small))(x), out)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_the_model_and_its_label_only_view_give_the_same_result(name, cnn_small, images):
    x, y = images
    plain = make(name, Leaky(cnn_small), 150)(x, y)
    labels = make(name, LabelOnly(cnn_small), 150)(x, y)
    for field in ("x_adv", "success", "queries", "steps", "distances"):
        assert torch.equal(getattr(plain, field), getattr(labels, field)), field


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_query_budget_is_exact_and_never_exceeded(name, cnn_small, images):
    x, y = images
    budget = 120
    counter = Counting(cnn_small)
    result = make(name, counter, budget)(x, y)
    assert counter.grad_calls == 0
    assert (result.queries <= budget).all() and (result.queries >= 1).all()
    # Every row the model saw is a counted query, but the two forward passes that report the logits.
    assert counter.rows == int(result.queries.sum()) + 2 * len(x)
    for i in (0, 3):  # per sample: alone in its batch, the same count as in the batch
        single = Counting(cnn_small)
        alone = make(name, single, budget)(x[i:i + 1], y[i:i + 1])
        assert single.rows == int(alone.queries[0]) + 2 and alone.queries[0] == result.queries[i]
    assert (result.queries > budget - 25).any()  # the budget is used, not left


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_distance_falls_as_the_budget_grows_and_success_is_real(name, cnn_small, images):
    x, y = images
    norm = "linf" if name == "hsj-linf" else "l2"
    medians, successes = [], []
    for budget in (60, 600):
        result = make(name, cnn_small, budget)(x, y)
        assert (predict(cnn_small, result.x_adv[result.success]) != y[result.success]).all()
        successes.append(result.success)
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
        ok = result.success
        torch.testing.assert_close(result.distances[ok], distance(norm, result.x_adv, x).float()[ok], rtol=1e-5,
                                   atol=1e-6)
        medians.append(result.distances.median().item())  # a failure counts as infinitely far
    assert successes[1].all() and successes[0].float().mean() >= 0.8
    assert medians[1] < 0.9 * medians[0]


@pytest.mark.parametrize("name", ["hsj-l2", "hsj-linf", "sign-opt"])
def test_seeded_runs_repeat_and_other_seeds_differ(name, cnn_small, images):
    x, y = images
    first, second = make(name, cnn_small, 100)(x, y), make(name, cnn_small, 100)(x, y)
    assert torch.equal(first.x_adv, second.x_adv) and torch.equal(first.queries, second.queries)
    other = make(name, cnn_small, 100, seed=1)(x, y)
    assert not torch.equal(first.x_adv, other.x_adv)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_targeted_run_from_target_class_images_reaches_the_target(name, cnn_small, images):
    x, y = images
    start = x.roll(1, dims=0)  # each sample starts from the image of another class
    target = predict(cnn_small, start)
    keep = target != y
    x, y, start, target = x[keep], y[keep], start[keep], target[keep]
    result = make(name, cnn_small, 200)(x, y, target=target, start=start)
    assert result.success.all()
    assert torch.equal(predict(cnn_small, result.x_adv), target)
    norm = "linf" if name == "hsj-linf" else "l2"
    assert (result.distances < distance(norm, start, x).float()).all()


class Tiny(nn.Module):
    """A small 3 x 8 x 8 classifier with fixed random weights."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))

    def forward(self, x):
        return self.net(x)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_any_image_shape(name):
    model = Tiny().eval()
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    y = predict(model, x)
    result = make(name, model, 200)(x, y)
    assert result.x_adv.shape == x.shape and result.success.any()
    assert (predict(model, result.x_adv)[result.success] != y[result.success]).all()
    assert (result.queries <= 200).all()


def test_eps_with_early_stop_spends_fewer_queries(cnn_small, images):
    x, y = images
    full = HopSkipJump(cnn_small, 400, seed=0, eps=3.0)(x, y)
    stopped = HopSkipJump(cnn_small, 400, seed=0, eps=3.0, early_stop=True)(x, y)
    for result in (full, stopped):
        assert (result.distances[result.success] <= 3.0 + 1e-4).all()
        assert torch.isinf(result.distances[~result.success]).all()
    assert stopped.success.any() and stopped.queries.sum() < full.queries.sum()


def test_settings_that_cannot_work_are_errors(cnn_small, images):
    x, y = images
    with pytest.raises(AttackInputError, match="l2"):
        BoundaryAttack(cnn_small, norm="linf")
    with pytest.raises(AttackInputError, match="max_queries"):
        HopSkipJump(cnn_small, 1)
    with pytest.raises(AttackInputError, match="start"):
        HopSkipJump(cnn_small, 50)(x, y, start=x[:2])
