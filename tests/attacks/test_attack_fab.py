"""FAB and FAB-T: the projection onto a hyperplane inside the box is the smallest step; returned points are
adversarial at the distances reported; with eps they stay in the ball and the box; seeded runs repeat; FAB's
distances are not larger than a PGD sweep's."""

from __future__ import annotations

import pytest
import torch
from attack_helpers import distance, predict

from alva.attacks import FAB, PGD, AttackInputError, FABTargeted, build
from alva.attacks.boundaries import project_onto_hyperplane
from alva.attacks.norms import get_norm

NORMS = ["linf", "l2", "l1"]
DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::4], y[::4]  # 50 images, 5 per class


@pytest.mark.parametrize("norm", NORMS)
def test_without_a_binding_box_the_projection_is_the_closed_form(norm):
    g = torch.Generator().manual_seed(0)
    p, w = torch.rand(8, 50, generator=g), torch.randn(8, 50, generator=g)
    c = torch.randn(8, generator=g)
    d = project_onto_hyperplane(norm, p, w, c, (-100.0, 100.0))
    torch.testing.assert_close((w * d).sum(1), c, rtol=1e-4, atol=1e-5)
    expected = c.abs() / get_norm(DUAL[norm]).measure(w)  # |c| / ||w||_dual
    torch.testing.assert_close(get_norm(norm).measure(d), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", NORMS)
def test_inside_the_box_no_point_of_the_hyperplane_is_closer(norm):
    # Three pixels: every point of a fine grid of the box that lies on the hyperplane is at least as far.
    g = torch.Generator().manual_seed(1)
    grid = torch.cartesian_prod(*[torch.linspace(0, 1, 161)] * 3)
    for _ in range(10):
        p, w = torch.rand(1, 3, generator=g), torch.randn(1, 3, generator=g)
        b = (w * torch.rand(1, 3, generator=g)).sum(1)  # the hyperplane <w, z> = b meets the box
        d = project_onto_hyperplane(norm, p, w, b - (w * p).sum(1), (0.0, 1.0))
        assert ((p + d) >= 0).all() and ((p + d) <= 1 + 1e-6).all()
        assert abs(((w * (p + d)).sum() - b).item()) < 1e-4
        on_plane = ((grid @ w[0]) - b).abs() < 2e-3 * w.abs().sum()
        nearest = get_norm(norm).measure(grid[on_plane] - p).min()
        assert get_norm(norm).measure(d) <= nearest + 0.01


@pytest.mark.parametrize("norm", NORMS)
def test_points_are_adversarial_at_the_distances_reported(cnn_small, batch, norm):
    x, y = batch
    result = FAB(cnn_small, norm=norm, steps=20, seed=0)(x, y)
    assert result.success.float().mean() >= 0.95
    broken = result.success & (predict(cnn_small, x) == y)
    assert (predict(cnn_small, result.x_adv)[broken] != y[broken]).all()
    torch.testing.assert_close(result.distances[broken].double(), distance(norm, result.x_adv, x)[broken],
                               rtol=1e-5, atol=1e-6)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.5), ("l1", 8.0)])
def test_fab_t_with_eps_stays_in_the_ball_and_the_box(cnn_small, batch, norm, eps):
    x, y = batch
    result = FABTargeted(cnn_small, norm=norm, eps=eps, steps=20, n_target_classes=3, seed=0)(x, y)
    measured = distance(norm, result.x_adv, x)
    assert (measured <= eps * (1 + 1e-5)).all()
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    assert 0 < result.success.float().mean() < 1  # eps is tight enough that some points survive
    assert torch.equal(result.success, torch.isfinite(result.distances))
    assert (predict(cnn_small, result.x_adv)[result.success] != y[result.success]).all()
    assert torch.equal(result.x_adv[~result.success], x[~result.success])
    # The runs that found the points targeted one of the three most likely other classes.
    found = result.extras["target_class"]
    ranked = cnn_small(x).detach().scatter(1, y[:, None], float("-inf")).argsort(1, descending=True)[:, :3]
    hit = found >= 0
    assert hit.any() and (ranked[hit] == found[hit, None]).any(dim=1).all()


def test_more_target_classes_never_give_larger_distances(cnn_small, batch):
    x, y = batch
    one = FABTargeted(cnn_small, norm="l2", steps=10, n_target_classes=1, seed=0)(x, y)
    three = FABTargeted(cnn_small, norm="l2", steps=10, n_target_classes=3, seed=0)(x, y)
    assert (three.distances <= one.distances + 1e-6).all()


def test_a_seeded_run_with_random_restarts_repeats(cnn_small, batch):
    x, y = batch[0][:25], batch[1][:25]
    first, second = (build("fab", cnn_small, norm="l2", steps=8, restarts=2, seed=4)(x, y) for _ in range(2))
    assert torch.equal(first.x_adv, second.x_adv) and torch.equal(first.distances, second.distances)
    assert torch.equal(first.queries, second.queries)


def test_a_sample_gets_the_same_result_in_any_batch(load_zoo, batch):
    # In double precision: in float32, batched convolutions round differently and FAB-T's steps amplify that.
    model = load_zoo("mnist/cnn-small").double()
    x, y = batch[0][:12].double(), batch[1][:12]
    settings = {"norm": "linf", "steps": 5, "restarts": 2, "n_target_classes": 2, "eps": 0.15, "seed": 0}
    full = FABTargeted(model, **settings)(x, y)
    rows = torch.tensor([7, 2, 10])
    part = FABTargeted(model, **settings)(x[rows], y[rows])
    torch.testing.assert_close(part.x_adv, full.x_adv[rows], rtol=0, atol=1e-10)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_not_farther_than_a_pgd_sweep(cnn_small, batch, norm):
    # A PGD sweep: per sample, the smallest perturbation that breaks it over a grid of radii.
    x, y = batch
    radii = torch.linspace(0.02, 0.3, 15) if norm == "linf" else torch.linspace(0.2, 3.0, 15)
    sweep = torch.full((len(x),), float("inf"), dtype=torch.float64)
    for eps in radii.flip(0).tolist():
        pgd = PGD(cnn_small, eps=eps, steps=20, norm=norm, seed=0)(x, y)
        size = distance(norm, pgd.x_adv, x)
        sweep = torch.where(pgd.success, torch.minimum(sweep, size), sweep)
    fab = FAB(cnn_small, norm=norm, steps=50, seed=0)(x, y)
    assert fab.success.sum() >= torch.isfinite(sweep).sum()
    assert fab.distances.double().median() <= sweep.median()
    assert (fab.distances.double() <= sweep + 1e-6).float().mean() >= 0.8


def test_a_target_is_reached(cnn_small, batch):
    x, y = batch
    target = (y + 3) % 10
    result = FAB(cnn_small, norm="l2", steps=30, seed=0)(x, y, target)
    assert result.success.float().mean() >= 0.9
    assert (predict(cnn_small, result.x_adv)[result.success] == target[result.success]).all()


@pytest.mark.parametrize("make", [
    lambda m: FAB(m, norm="l0"), lambda m: FAB(m, alpha_max=1.5), lambda m: FAB(m, beta=1.0),
    lambda m: FAB(m, eta=0.5), lambda m: FABTargeted(m, target="random"), lambda m: FAB(m, steps=0)])
def test_bad_settings_are_refused(cnn_small, make):
    with pytest.raises((AttackInputError, ValueError)):
        make(cnn_small)
