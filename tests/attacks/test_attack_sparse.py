"""SparseConfident: the early-stop rule (both thresholds, first step), masks, bounds, seeds, generation on
the shipped cnn-small, the per-class summary and ``alva sparse``."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from alva.attacks import AttackInputError
from alva.attacks.sparse import SparseConfident, pixel_l0, pixel_l1, sparse_summary
from alva.cli.main import main


class Counting(nn.Module):
    """The model, counting the images it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


def linear_model() -> nn.Module:
    """16 pixels, 2 classes: class 1 likes pixels 0-3 strongly (weight 3) and the rest weakly (0.2)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2)).double()
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1, :4] = 3.0
        model[1].weight[1, 4:] = 0.2
    return model.eval()


def reference_stop(model, x0, target, *, lr, lam, confidence, max_pixels, steps, tol=1e-3):
    """An independent, one-sample ISTA loop: the first step (number of updates) at which the target
    probability is >= confidence and at most max_pixels pixels exceed tol; None if none within steps."""
    x = x0.clone()
    for s in range(steps + 1):
        x = x.detach().requires_grad_(True)
        logits = model(x[None])
        p = logits.softmax(1)[0, target].item()
        if p >= confidence and int((x.detach() > tol).sum()) <= max_pixels:
            return s
        if s == steps:
            return None
        (g,) = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([target])), x)
        x = (x.detach() - lr * (g + lam)).clamp(0, 1)
    return None


def test_stop_step_is_the_first_step_where_both_thresholds_hold():
    model = linear_model()
    # Sample 0: target probability is already ~1 at the start, but all 16 pixels are on: it must go on until
    # the 12 weak pixels are zero. Sample 1: starts blank, must grow. Sample 2: too few steps to stop.
    x = torch.zeros(3, 1, 4, 4, dtype=torch.float64)
    x[0].view(-1)[:4] = 0.9
    x[0].view(-1)[4:] = 0.3
    x[2].view(-1)[:] = 0.8
    settings_ = {"lr": 0.05, "lam": 1.0, "confidence": 0.9, "max_pixels": 4}
    attack = SparseConfident(model, start="input", optimizer="ista", steps=30, record=True, **settings_)
    steps_budget = [30, 30, 3]
    results = [attack(x[i:i + 1], torch.tensor([1])) for i in range(2)]
    short = SparseConfident(model, start="input", optimizer="ista", steps=3, record=True, **settings_)
    results.append(short(x[2:3], torch.tensor([1])))
    for i, r in enumerate(results):
        expected = reference_stop(model, x[i, 0], 1, steps=steps_budget[i], **settings_)
        history = r.extras["history"]
        if expected is None:
            assert not r.success.item() and r.steps.item() == steps_budget[i]
            assert r.queries.item() == 1 + steps_budget[i] + 1
        else:
            assert r.success.item() and r.steps.item() == expected == r.extras["first_success"].item()
            assert r.queries.item() == 1 + expected + 1
            # after the stop nothing is recorded
            assert torch.isnan(history["target_prob"][expected + 1:, 0]).all()
        assert r.extras["l0"].item() == pixel_l0(r.x_adv, 0.0, 1e-3).item()
    # sample 0 was confident before it was sparse: confidence alone did not stop it
    h = results[0].extras["history"]
    assert h["target_prob"][0, 0] >= 0.9 and h["l0"][0, 0] == 16
    assert results[0].steps.item() > 0
    assert results[0].extras["l0"].item() <= 4 < 16


def test_batch_gives_the_same_stop_steps_as_single_samples():
    model = linear_model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 4, 4, generator=g, dtype=torch.float64)
    attack = SparseConfident(model, start="input", optimizer="ista", lr=0.05, lam=1.0, max_pixels=4, steps=40)
    batch = attack(x, torch.ones(6, dtype=torch.long))
    for i in range(6):
        expected = reference_stop(model, x[i, 0], 1, lr=0.05, lam=1.0, confidence=0.9, max_pixels=4, steps=40)
        assert batch.steps[i].item() == (40 if expected is None else expected)
        assert batch.success[i].item() == (expected is not None)


def test_without_early_stop_every_sample_runs_all_steps_and_first_success_agrees():
    model = linear_model()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kwargs = {"start": "input", "optimizer": "ista", "lr": 0.05, "lam": 1.0, "max_pixels": 4, "steps": 25}
    stopped = SparseConfident(model, **kwargs)(x, torch.ones(4, dtype=torch.long))
    full = SparseConfident(model, early_stop=False, **kwargs)(x, torch.ones(4, dtype=torch.long))
    assert (full.steps == 25).all() and (full.queries == 27).all()
    assert torch.equal(full.extras["first_success"], stopped.extras["first_success"])
    assert torch.equal(stopped.steps[stopped.success], stopped.extras["first_success"][stopped.success])


def test_masked_pixels_stay_exactly_zero_and_pixels_stay_in_bounds(cnn_small):
    targets = torch.arange(10)
    attack = SparseConfident(cnn_small, start="uniform", mask_fraction=0.5, steps=25, lam=0.01, seed=0)
    r = attack.generate(targets)
    mask = r.extras["mask"]
    assert mask.shape == (10, 1, 28, 28)
    assert (mask.flatten(1).sum(1) == 392).all()  # floor(0.5 * 784) per sample
    assert (r.x_adv[mask] == 0).all()
    assert (r.x_adv[~mask] > 0).any()
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


def test_generation_reaches_the_target_on_cnn_small(cnn_small):
    targets = torch.arange(10)
    r = SparseConfident(cnn_small, steps=60).generate(targets)
    assert r.success.sum() >= 8
    with torch.no_grad():
        probs = cnn_small(r.x_adv).softmax(1)
    ok = r.success
    assert (probs.argmax(1)[ok] == targets[ok]).all()
    assert (probs[ok, targets[ok]] >= 0.9).all()
    assert (pixel_l0(r.x_adv[ok]) <= 300).all()
    assert torch.allclose(r.extras["target_prob"], probs.gather(1, targets[:, None]).squeeze(1), atol=1e-5)
    assert torch.equal(r.extras["first_success"][ok], r.steps[ok])


def test_call_forms_agree_and_queries_are_counted(cnn_small):
    counting = Counting(cnn_small)
    targets = torch.tensor([3, 7, 1])
    x = torch.zeros(3, 1, 28, 28)
    attack = SparseConfident(counting, steps=20)
    a = attack(x, targets)
    assert counting.images == int(a.queries.sum())
    b = attack(x, torch.zeros(3, dtype=torch.long), target=targets)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.target, targets) and torch.equal(b.target, targets)


def test_seed_repeats_exactly_and_other_seeds_differ(cnn_small):
    targets = torch.tensor([0, 5, 9])

    def make(seed):
        return SparseConfident(cnn_small, start="uniform", mask_fraction=0.3, steps=15, seed=seed).generate(targets)

    a, b, c = make(4), make(4), make(5)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.extras["mask"], b.extras["mask"])
    assert torch.equal(a.steps, b.steps)
    assert not torch.equal(a.extras["mask"], c.extras["mask"])


def test_identical_blank_images_get_different_masks_and_starts(cnn_small):
    """Masks and uniform starts are keyed per sample, identical blank images (what generate starts from) by
    their class and their rank among the copies of that class: they get different ones, and a copy's image
    does not depend on the other classes of its batch."""
    attack = SparseConfident(cnn_small, start="uniform", mask_fraction=0.5, steps=3, early_stop=False, seed=0)
    r = attack.generate(torch.tensor([2, 2, 2]))
    masks = r.extras["mask"].flatten(1)
    assert not torch.equal(masks[0], masks[1]) and not torch.equal(masks[1], masks[2])
    assert not torch.equal(r.x_adv[0], r.x_adv[1])
    mixed = attack.generate(torch.tensor([2, 6, 2, 2]))
    assert torch.equal(mixed.extras["mask"][[0, 2, 3]], r.extras["mask"])
    torch.testing.assert_close(mixed.x_adv[[0, 2, 3]], r.x_adv, rtol=0, atol=1e-5)  # batched convolutions round


def test_a_sample_gets_the_same_start_mask_and_result_in_any_batch(cnn_small, attack_batch):
    x, targets = attack_batch[0][::25], (attack_batch[1][::25] + 1) % 10
    attack = SparseConfident(cnn_small, start="uniform", mask_fraction=0.3, steps=20, seed=2)
    full = attack(x, targets)
    rows = torch.tensor([6, 1, 3])
    part = attack(x[rows], targets[rows])
    torch.testing.assert_close(part.x_adv, full.x_adv[rows], rtol=0, atol=1e-5)
    assert torch.equal(part.extras["mask"], full.extras["mask"][rows])
    assert torch.equal(part.steps, full.steps[rows]) and torch.equal(part.success, full.success[rows])


def test_success_is_both_thresholds_at_the_returned_image(cnn_small):
    """The engine's final check uses the attack's own success test: target probability and L0 of x_adv."""
    targets = torch.arange(10)
    attack = SparseConfident(cnn_small, confidence=0.6, max_pixels=40, steps=60, lam=0.1)
    r = attack.generate(targets)
    with torch.no_grad():
        prob = cnn_small(r.x_adv).softmax(1).gather(1, targets[:, None]).squeeze(1)
    expected = (prob >= 0.6) & (pixel_l0(r.x_adv) <= 40)
    assert torch.equal(r.success, expected) and r.success.any() and not r.success.all()
    stopped = r.success & (r.steps < 60)
    assert torch.equal(r.extras["first_success"][stopped], r.steps[stopped])
    assert (r.queries == r.steps + 2).all()  # the clean pass and one check per step, the last included


@st.composite
def cases(draw):
    n = draw(st.integers(1, 4))
    shape = (n, draw(st.integers(1, 3)), draw(st.integers(2, 6)), draw(st.integers(2, 6))) if draw(st.booleans()) \
        else (n, draw(st.integers(2, 30)))
    return {
        "shape": shape,
        "seed": draw(st.integers(0, 2**16)),
        "start": draw(st.sampled_from(["zeros", "uniform", "input"])),
        "optimizer": draw(st.sampled_from(["adam", "ista"])),
        "mask_fraction": draw(st.sampled_from([0.0, 0.25, 0.6])),
        "steps": draw(st.integers(1, 6)),
        "max_pixels": draw(st.integers(0, 10)),
        "confidence": draw(st.sampled_from([0.0, 0.3, 0.9])),
        "early_stop": draw(st.booleans()),
    }


@settings(max_examples=40, deadline=None)
@given(cases())
def test_properties_on_random_models(case):
    shape = case.pop("shape")
    seed = case.pop("seed")
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape[1:]), 5))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    counting = Counting(model.eval())
    x = torch.rand(shape, generator=g)
    targets = torch.randint(0, 5, (shape[0],), generator=g)
    attack = SparseConfident(counting, lam=0.1, lr=0.2, seed=seed, **case)
    r = attack(x, targets)
    assert r.x_adv.shape == x.shape and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    assert counting.images == int(r.queries.sum())
    assert (r.steps <= case["steps"]).all() and (r.queries == r.steps + 2).all()
    if not case["early_stop"]:
        assert (r.steps == case["steps"]).all()
    mask = r.extras["mask"]
    if case["mask_fraction"] > 0 and mask is not None:
        pixels = math.prod(mask.shape[1:])
        assert (mask.flatten(1).sum(1) == int(case["mask_fraction"] * pixels)).all()
        assert (r.x_adv.masked_select(mask.expand_as(r.x_adv)) == 0).all()
    with torch.no_grad():
        prob = model(r.x_adv).softmax(1).gather(1, targets[:, None]).squeeze(1)
    l0 = pixel_l0(r.x_adv)
    assert torch.equal(r.extras["l0"], l0)
    assert torch.allclose(r.extras["l1"], pixel_l1(r.x_adv))
    assert torch.equal(r.success, (prob >= case["confidence"]) & (l0 <= case["max_pixels"]))
    if case["early_stop"]:
        # a sample that did not use its whole budget stopped because it succeeded
        assert r.success[r.steps < case["steps"]].all()


def test_summary_per_class_matches_the_samples(cnn_small):
    targets = torch.tensor([2, 2, 2, 6, 6])
    r = SparseConfident(cnn_small, start="uniform", steps=40, seed=1).generate(targets)
    s = sparse_summary(r)
    assert s["overall"]["n"] == 5 and set(s["per_class"]) == {2, 6}
    rows = targets == 6
    six = s["per_class"][6]
    assert six["n"] == 2
    assert six["success_rate"] == pytest.approx(r.success[rows].float().mean().item())
    assert six["l0"] == pytest.approx(pixel_l0(r.x_adv[rows]).float().mean().item())
    assert six["l1"] == pytest.approx(pixel_l1(r.x_adv[rows]).mean().item(), rel=1e-5)
    assert six["target_prob"] == pytest.approx(r.extras["target_prob"][rows].mean().item(), rel=1e-5)
    assert six["steps"] == pytest.approx(r.steps[rows].float().mean().item())
    assert s["overall"]["queries"] == pytest.approx(r.queries.float().mean().item())
    with pytest.raises(ValueError, match="targeted"):
        sparse_summary(type(r)(r.x_adv, r.success, r.steps, r.queries, r.adv_logits, r.clean_logits, None))


@pytest.mark.parametrize("kwargs, message", [
    ({"confidence": 1.5}, "confidence"),
    ({"max_pixels": -1}, "max_pixels"),
    ({"lam": -0.1}, "lam"),
    ({"mask_fraction": 1.0}, "mask_fraction"),
    ({"start": "noise"}, "start"),
    ({"optimizer": "sgd"}, "optimizer"),
    ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "lr"),
])
def test_bad_settings_are_refused(softmax_model, kwargs, message):
    with pytest.raises(AttackInputError, match=message):
        SparseConfident(softmax_model, **kwargs)


def test_cli_writes_summary_grid_and_images(tmp_path, capsys):
    out = tmp_path / "sparse"
    code = main(["sparse", "--model", "mnist/cnn-small", "--target", "3,8", "--n-per-class", "2", "--steps", "200",
                 "--start", "uniform", "--no-progress", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    per_class = result["summary"]["per_class"]
    assert set(per_class) == {"3", "8"} and per_class["3"]["n"] == 2
    assert result["summary"]["overall"]["success_rate"] > 0
    assert (out / "grid.png").stat().st_size > 1000 and (out / "images.safetensors").stat().st_size > 1000
    assert "per class success" in capsys.readouterr().out
    assert main(["sparse", "--target", "12", "--no-progress", "--out", str(out)]) == 2
