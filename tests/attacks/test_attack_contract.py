"""The contract every registered attack honours, checked by running the same tests over the registry
(alva.attacks.REGISTRY) on real MNIST images and the shipped mnist/cnn-small: x_adv within the bounds and the
eps ball, a success mask that agrees with the model, the model's state restored, seeded repeatability, and a
sample's result independent of its batch where the attack promises that.

A minimum-norm attack (a :class:`~alva.attacks.minimum_norm.MinimumNormAttack`) has no eps ball unless its eps
is set; its result's distances must be the measured norms of the returned perturbations.

To add an attack: one entry in FAST (its small budget), and its name in BATCH_INDEPENDENT if it promises that."""

from __future__ import annotations

import pytest
import torch

from alva.attacks import REGISTRY, MinimumNormAttack, MinimumNormResult, build, get_norm

# Small budgets, so that the whole registry runs in seconds; every other setting is the attack's default.
FAST = {
    "fgsm": {},
    "pgd": {"steps": 5},
    "apgd": {"steps": 5},
    "apgd-t": {"steps": 5, "n_target_classes": 2},
    "square": {"n_queries": 30},
    "one-pixel": {"popsize": 10, "generations": 3},
    "sparse": {"steps": 20},
    "deepfool": {"steps": 5, "eps": 1.5},
    "fab": {"steps": 5, "restarts": 2, "eps": 0.15},
    "fab-t": {"steps": 3, "restarts": 2, "n_target_classes": 2, "eps": 0.15},
    "fmn": {"steps": 10},
    "ead": {"steps": 10, "binary_steps": 2, "initial_const": 1.0},
    "cw": {"steps": 10, "binary_steps": 2, "initial_const": 1.0},
    "ddn": {"steps": 10},
    "sparse-rs": {"n_queries": 30},
    "jsma": {"gamma": 0.02},
    "mi-fgsm": {"steps": 3},
    "di-fgsm": {"steps": 3},
    "ti-fgsm": {"steps": 3, "kernel_size": 5},
    "ni-fgsm": {"steps": 3},
    "vmi-fgsm": {"steps": 2, "variance_samples": 3},
    "spsa": {"n_queries": 60, "samples": 4},
    "simba": {"n_queries": 40, "eps": 2.0},
    "nes": {"n_queries": 60, "samples": 4},
    "hsj": {"max_queries": 150},
    "boundary": {"max_queries": 150},
    "sign-opt": {"max_queries": 150},
}
# Attacks whose random numbers are keyed per sample (or that draw none): a sample's result is the same in any batch.
BATCH_INDEPENDENT = {"fgsm", "pgd", "apgd", "apgd-t", "square", "one-pixel", "sparse", "deepfool", "fab", "fmn", "ead",
                     "cw", "ddn", "sparse-rs", "jsma", "mi-fgsm", "di-fgsm", "ti-fgsm", "ni-fgsm", "vmi-fgsm", "spsa",
                     "simba", "nes", "hsj", "boundary", "sign-opt"}
MINIMUM_NORM = sorted(name for name, spec in REGISTRY.items() if issubclass(spec.cls, MinimumNormAttack))


def make(name: str, model: torch.nn.Module, **settings):
    return build(name, model, **{"seed": 0, **FAST[name], **settings})


@pytest.fixture(scope="module")
def batch(attack_batch):
    x, y = attack_batch
    return x[::10][:16], y[::10][:16]


def test_every_registered_attack_is_covered():
    assert set(FAST) == set(REGISTRY)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_bounds_ball_and_success_agree_with_the_model(name, cnn_small, batch):
    x, y = batch
    attack = make(name, cnn_small)
    result = attack(x, y)
    assert result.x_adv.shape == x.shape and len(result.success) == len(x)
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    if getattr(attack, "eps", None) is not None:  # a minimum-norm attack has a ball only when eps is set
        distance = get_norm(attack.norm).measure(result.x_adv - x)
        assert (distance <= attack.eps * (1 + 1e-5) + 1e-5).all()
    with torch.no_grad():
        logits = cnn_small(result.x_adv)
    torch.testing.assert_close(result.adv_logits, logits, rtol=1e-4, atol=1e-4)
    judged = attack.loss.success(logits, y, result.target)
    if name == "sparse":  # success also needs few pixels: it implies the model's verdict
        assert not (result.success & ~judged).any()
    else:
        assert torch.equal(result.success, judged)
    assert (result.queries >= 1).all() and (result.steps >= 0).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_model_state_is_restored(name, load_zoo, batch):
    model = load_zoo("mnist/cnn-small")
    model.train()
    frozen = next(iter(model.parameters()))
    frozen.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    make(name, model)(*batch)
    assert all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags and not frozen.requires_grad
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_same_seed_repeats_the_result(name, cnn_small, batch):
    first, second = make(name, cnn_small)(*batch), make(name, cnn_small)(*batch)
    for field in ("x_adv", "success", "steps", "queries", "adv_logits"):
        assert torch.equal(getattr(first, field), getattr(second, field)), field


@pytest.mark.parametrize("name", sorted(BATCH_INDEPENDENT))
def test_a_sample_gets_the_same_result_in_any_batch(name, cnn_small, batch):
    x, y = batch
    full = make(name, cnn_small)(x, y)
    rows = torch.tensor([5, 1, 12])
    part = make(name, cnn_small)(x[rows], y[rows])
    torch.testing.assert_close(part.x_adv, full.x_adv[rows], rtol=0, atol=1e-5)
    assert torch.equal(part.success, full.success[rows])


@pytest.mark.parametrize("name", MINIMUM_NORM)
def test_minimum_norm_distances_are_the_measured_norms(name, cnn_small, batch):
    x, y = batch
    result = make(name, cnn_small)(x, y)
    assert isinstance(result, MinimumNormResult)
    measured = get_norm(result.norm).measure(result.x_adv - x)
    assert torch.allclose(result.distances[result.success], measured[result.success], rtol=1e-5, atol=1e-6)
    assert torch.isinf(result.distances[~result.success]).all()
    assert torch.equal(result.x_adv[~result.success], x[~result.success])  # a failure returns the clean point
    with torch.no_grad():
        clean_wrong = cnn_small(x).argmax(1) != y
    assert (result.distances[clean_wrong] == 0).all()
    assert result.success.any()  # the attack works even on this budget
