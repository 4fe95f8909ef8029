"""DifferentialEvolution: exact query counts within the budget, at most k pixels changed, black-box use of
the model, effect on real models, targeted success, seeds, sparse generation and ``alva one-pixel``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from alva.attacks import AttackInputError
from alva.attacks.differential_evolution import DifferentialEvolution, OnePixel, _distinct_others
from alva.attacks.keyed import generator_uniform
from alva.attacks.population import PopulationSearch
from alva.attacks.sparse import pixel_l0, sparse_summary
from alva.cli.main import main


class Counting(nn.Module):
    """The model, counting the images it is given; refuses to run with gradients enabled (black box)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x):
        assert not torch.is_grad_enabled(), "DE must query the model without gradients"
        self.images += len(x)
        return self.model(x)


def changed_pixels(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """Positions (all channels together) where x_adv differs from x."""
    diff = x_adv != x
    if diff.ndim >= 4:
        diff = diff.any(dim=1)
    return diff.reshape(len(x), -1).sum(dim=1)


def random_model(shape: tuple[int, ...], seed: int, classes: int = 4) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape[1:]), classes))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 2)
    return model.eval()


@st.composite
def cases(draw):
    n = draw(st.integers(1, 5))
    kind = draw(st.sampled_from(["chw", "hw", "flat"]))
    if kind == "chw":
        shape = (n, draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    elif kind == "hw":
        shape = (n, draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    else:
        shape = (n, draw(st.integers(1, 20)))
    popsize = draw(st.integers(4, 9))
    generations = draw(st.integers(0, 4))
    max_queries = draw(st.one_of(st.none(), st.integers(1 + popsize, 1 + popsize * 6)))
    return {
        "shape": shape, "seed": draw(st.integers(0, 2**16)), "pixels": draw(st.integers(1, 4)),
        "popsize": popsize, "generations": generations, "max_queries": max_queries,
        "strategy": draw(st.sampled_from(["rand1", "best1"])), "crossover": draw(st.sampled_from([1.0, 0.5])),
        "mutation": draw(st.sampled_from([0.5, (0.5, 1.0)])), "early_stop": draw(st.booleans()),
        "targeted": draw(st.booleans()), "chunk_size": draw(st.sampled_from([3, 512])),
    }


@settings(max_examples=60, deadline=None)
@given(cases())
def test_budget_exact_queries_and_at_most_k_pixels(case):
    shape, seed, targeted = case.pop("shape"), case.pop("seed"), case.pop("targeted")
    model = random_model(shape, seed)
    counting = Counting(model)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(shape, generator=g)
    y = torch.randint(0, 4, (shape[0],), generator=g)
    target = (y + 1) % 4 if targeted else None
    attack = DifferentialEvolution(counting, seed=seed, **case)
    r = attack(x, y, target=target)
    popsize, generations, max_queries = case["popsize"], case["generations"], case["max_queries"]
    budget = 1 + popsize * (1 + generations)
    if max_queries is not None:
        budget = min(budget, max_queries)
    assert attack.budget == budget
    # exact: the model saw exactly the reported queries, and no image got more than the budget
    assert counting.images == int(r.queries.sum())
    assert (r.queries <= budget).all() and (r.queries >= 1).all()
    unfinished = ~r.success if case["early_stop"] else torch.ones_like(r.success)
    assert (r.queries[unfinished] == budget).all()
    # the generations counted fit the queries: the initial population, then up to popsize per generation
    ran = r.queries > 1
    assert (r.queries[ran] >= 1 + popsize + r.steps[ran]).all()
    assert (r.queries[ran] <= 1 + popsize + r.steps[ran] * popsize).all()
    assert (r.steps[~ran] == 0).all() and (r.steps <= generations).all()
    # at most k pixels changed, all in bounds, and the reported pixels are the changed ones
    changed = changed_pixels(x, r.x_adv)
    assert (changed <= case["pixels"]).all()
    assert torch.equal(changed, r.extras["changed_pixels"])
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    # the logits returned are the model's at x_adv, and success agrees with them
    with torch.no_grad():
        logits = model(r.x_adv)
    assert torch.allclose(logits, r.adv_logits, atol=1e-5)
    pred = logits.argmax(1)
    assert torch.equal(r.success, pred == target if targeted else pred != y)


def test_clean_success_costs_one_query_and_changes_nothing(softmax_model, attack_batch):
    x, y = attack_batch
    with torch.no_grad():
        wrong = softmax_model(x).argmax(1) != y
    assert wrong.any()
    counting = Counting(softmax_model)
    r = DifferentialEvolution(counting, popsize=10, generations=2, seed=0)(x[wrong], y[wrong])
    assert r.success.all() and (r.queries == 1).all() and (r.steps == 0).all()
    assert torch.equal(r.x_adv, x[wrong]) and (r.extras["pixels"] == -1).all()
    assert counting.images == int(wrong.sum())


def test_untargeted_de_lowers_accuracy_of_softmax_model(softmax_model, attack_batch):
    x, y = attack_batch[0][:60], attack_batch[1][:60]
    r = DifferentialEvolution(softmax_model, pixels=5, popsize=50, generations=20, seed=0)(x, y)
    with torch.no_grad():
        clean = (softmax_model(x).argmax(1) == y).float().mean().item()
        adv = (softmax_model(r.x_adv).argmax(1) == y).float().mean().item()
    assert adv <= clean - 0.1
    assert (changed_pixels(x, r.x_adv) <= 5).all()
    assert r.success_rate == pytest.approx(1 - adv, abs=1e-6)


def test_targeted_success_means_the_target_is_predicted(cnn_small):
    targets = torch.tensor([1, 3, 5, 7])
    attack = DifferentialEvolution(cnn_small, pixels=30, popsize=60, generations=30, strategy="best1",
                                   confidence=0.9, seed=0)
    r = attack.generate(targets)
    assert r.success.sum() >= 2
    with torch.no_grad():
        probs = cnn_small(r.x_adv).softmax(1)
    reached = (probs.argmax(1) == targets) & (probs.gather(1, targets[:, None]).squeeze(1) >= 0.9)
    assert torch.equal(r.success, reached)
    # generated from a blank image: only the k set pixels can be non-zero
    assert (pixel_l0(r.x_adv, 0.0, 0.0) <= 30).all()
    s = sparse_summary(r)
    assert s["overall"]["success_rate"] == pytest.approx(r.success.float().mean().item())


class NoisyCopies(PopulationSearch):
    """A population search written on the engine in a few lines: candidates are x plus uniform noise of
    amplitude eps; a trial is a fresh noisy copy. The engine does the rest."""

    def __init__(self, model, eps: float = 0.3, popsize: int = 8, generations: int = 5, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.eps, self.popsize, self.generations = eps, popsize, generations

    def _noisy(self, run, rows, m):
        noise = run.uniform(rows, rows.stream)(m * rows.x0[0].numel()).view(rows.n, m, *rows.x0.shape[1:]) * 2 - 1
        return (rows.x0[:, None] + self.eps * noise).clamp(*self.bounds)

    def start(self, run, rows):
        return self._noisy(run, rows, self.popsize)

    def propose(self, run, rows, members):
        return self._noisy(run, rows, members)

    def candidate_logits(self, rows, candidates):
        return self.predict(candidates.flatten(0, 1), rows.y)

    def images(self, rows, local, candidates):
        return candidates


def test_a_population_search_on_the_engine_gets_budget_early_stop_and_its_result(cnn_small, attack_batch):
    x, y = attack_batch[0][::5], attack_batch[1][::5]
    counting = Counting(cnn_small)
    stopped = NoisyCopies(counting, eps=0.3, early_stop=True, seed=0)(x, y)
    assert counting.images == int(stopped.queries.sum())  # the clean pass and every candidate, each counted
    budget = 1 + 8 * 6
    assert (stopped.queries[~stopped.success] == budget).all() and (stopped.queries <= budget).all()
    assert (stopped.steps[~stopped.success] == 5).all()
    assert (stopped.x_adv - x).abs().amax() <= 0.3 + 1e-6
    with torch.no_grad():
        logits = cnn_small(stopped.x_adv)
    assert torch.allclose(logits, stopped.adv_logits, atol=1e-5)
    assert torch.equal(stopped.success, logits.argmax(1) != y) and stopped.success.any()
    full = NoisyCopies(cnn_small, eps=0.3, early_stop=False, seed=0)(x, y)
    assert (full.queries == budget).all() and full.queries.sum() > stopped.queries.sum()


def test_identical_blank_images_get_different_candidates(cnn_small):
    """Identical starts (sparse generation from blank images) are keyed by their class and their rank among
    the copies of that class: they evolve differently, and a copy's image does not depend on the other classes
    of its batch."""
    de = DifferentialEvolution(cnn_small, pixels=10, popsize=12, generations=3, seed=0)
    r = de.generate(torch.tensor([4, 4, 4]))
    assert len({tuple(p.flatten().tolist()) for p in r.extras["pixels"]}) == 3
    mixed = de.generate(torch.tensor([7, 4, 2, 4, 4]))
    assert torch.equal(mixed.x_adv[[1, 3, 4]], r.x_adv)


def test_a_sample_gets_the_same_result_in_any_batch(cnn_small, attack_batch):
    """Every random number is keyed per sample: the result of a sample alone or in another batch order is
    the one it gets in the whole batch (every kind of draw: population, best1 mutation with dither,
    crossover, repair)."""
    x, y = attack_batch[0][::20], attack_batch[1][::20]

    def attack(rows):
        return DifferentialEvolution(cnn_small, pixels=3, popsize=12, generations=6, mutation=(0.5, 1.0),
                                     crossover=0.7, strategy="best1", seed=1)(x[rows], y[rows])

    full = attack(torch.arange(len(x)))
    order = torch.tensor([7, 2, 9, 0, 4])
    for rows in (order, order[:1]):
        part = attack(rows)
        assert torch.equal(part.x_adv, full.x_adv[rows])
        for name in ("success", "steps", "queries"):
            assert torch.equal(getattr(part, name), getattr(full, name)[rows]), name
        assert torch.equal(part.extras["pixels"], full.extras["pixels"][rows])


def test_seed_repeats_exactly(cnn_small, attack_batch):
    x, y = attack_batch[0][:8], attack_batch[1][:8]

    def run(seed):
        return DifferentialEvolution(cnn_small, pixels=2, popsize=12, generations=4, crossover=0.7, seed=seed)(x, y)

    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert torch.equal(a.extras["pixels"], b.extras["pixels"])
    assert not torch.equal(a.x_adv, c.x_adv)


def test_evolution_improves_the_fitness(cnn_small, attack_batch):
    """Without early stop, more generations from the same seed never end with a worse best candidate."""
    x, y = attack_batch[0][:6], attack_batch[1][:6]
    margins = []
    for generations in (0, 10):
        r = DifferentialEvolution(cnn_small, pixels=5, popsize=30, generations=generations, loss="margin",
                                  early_stop=False, seed=0)(x, y)
        own = r.adv_logits.gather(1, y[:, None]).squeeze(1)
        margins.append(own - r.adv_logits.scatter(1, y[:, None], -math.inf).amax(1))
    assert (margins[1] <= margins[0] + 1e-5).all() and (margins[1] < margins[0] - 0.1).any()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 4), st.integers(4, 12), st.integers(1, 3), st.integers(0, 1000))
def test_distinct_others_are_distinct_and_not_the_member(n, size, count, seed):
    members = size - 1 if seed % 2 else size
    idx = _distinct_others(generator_uniform(n, torch.Generator().manual_seed(seed)), size, members, count)
    assert idx.shape == (n, members, count)
    assert idx.min() >= 0 and idx.max() < size
    own = torch.arange(members)[None, :, None]
    assert (idx != own).all()
    for j in range(count):
        for k in range(j + 1, count):
            assert (idx[..., j] != idx[..., k]).all()


def test_one_pixel_defaults_and_bad_settings(cnn_small):
    attack = OnePixel(cnn_small)
    assert (attack.pixels, attack.popsize, attack.generations, attack.budget) == (1, 400, 100, 1 + 400 * 101)
    for kwargs, message in [({"popsize": 3}, "popsize"), ({"max_queries": 10, "popsize": 10}, "max_queries"),
                            ({"mutation": 0.0}, "mutation"), ({"crossover": 0.0}, "crossover"),
                            ({"strategy": "best2"}, "strategy"), ({"generations": -1}, "generations"),
                            ({"pixels": 0}, "pixels"), ({"confidence": 2.0}, "confidence")]:
        with pytest.raises(AttackInputError, match=message):
            DifferentialEvolution(cnn_small, **kwargs)


def test_cli_one_pixel_writes_summary_and_grid(tmp_path, capsys):
    out = tmp_path / "de"
    code = main(["one-pixel", "--model", "mnist/softmax", "--pixels", "3", "--popsize", "20", "--generations", "5",
                 "--n", "20", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"] == 1 + 20 * 6
    assert summary["report"]["n"] == 20 and summary["report"]["mean_queries"] <= summary["budget"]
    assert summary["report"]["norms"]["l0"] <= 3
    assert (out / "grid.png").stat().st_size > 1000
    assert "query budget 121" in capsys.readouterr().out


def test_cli_sparse_by_de(tmp_path):
    out = tmp_path / "sparse-de"
    code = main(["sparse", "--method", "de", "--target", "1", "--n-per-class", "2", "--pixels", "20",
                 "--popsize", "30", "--generations", "10", "--strategy", "best1", "--no-progress", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["summary"]["per_class"]["1"]["n"] == 2
    assert result["summary"]["overall"]["l0"] <= 20
