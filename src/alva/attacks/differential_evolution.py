"""Differential evolution on k pixels: the one-pixel attack of Su, Vargas and Sakurai (2019, "One pixel
attack for fooling deep neural networks"), with the DE/rand/1 scheme of Storn and Price (1997).

Black-box: only the model's outputs are used (every forward pass runs under ``torch.no_grad``) and every
forward pass is counted as a query of the image it belongs to.

A candidate is ``k`` tuples ``(row, col, value_1, ..., value_C)``: it sets the ``C`` channels of ``k``
pixels of ``x``, so the result differs from ``x`` in at most ``k`` pixels. The populations of all images
still attacked evolve together, one batched forward pass per generation, with no loop over images; the
bookkeeping (the images still attacked, the query budget, early stop, each image's result, the counters) is
the engine's (:class:`~alva.attacks.population.PopulationSearch`). Random numbers are keyed per image
(:mod:`alva.attacks.keyed`): an image's attack does not depend on its batch.

Fitness (minimised): minus the attack loss, by default (``loss="ce"``) the log-probability of the true
class (untargeted) or minus that of the target class (targeted). Su et al. minimise the probability itself;
the log ranks candidates in the same order but does not saturate: on the shipped MNIST models the
true-class probability of almost every one-pixel candidate is 1.0 in float32, and ties would leave
selection blind. A candidate *succeeds* when the attack loss says so (with ``confidence``, that class also
needs at least that probability: :class:`~alva.attacks.losses.Confident`).

Two uses: attacks on real images (``attack(x, y)``, ``attack(x, y, target=t)``), and generation of sparse
images of a class from a blank image (:meth:`DifferentialEvolution.generate`, e.g. ``pixels=30,
confidence=0.9``), the black-box "different process" of the fake-class training metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from alva.attacks.base import AttackInputError, AttackResult
from alva.attacks.engine import Run
from alva.attacks.errors import in_interval, integer_at_least, positive_int
from alva.attacks.keyed import Uniform
from alva.attacks.losses import ClassLoss, Confident
from alva.attacks.population import PopulationRows, PopulationSearch
from alva.attacks.sparse import blank_starts, class_probability, pixel_l0

__all__ = ["DifferentialEvolution", "OnePixel"]

STRATEGIES = ("rand1", "best1")
CPU_CHUNK = 512  # candidate images per forward pass on the CPU (see DifferentialEvolution's chunk_size)


class DifferentialEvolution(PopulationSearch):
    """k-pixel attack (and sparse generation) by differential evolution.

    Args:
        pixels: k, the number of pixels a candidate sets (default 1).
        popsize: candidates per image (>= 4; default 400 as in Su et al.).
        generations: most generations after the initial population (>= 0; default 100 as in Su et al.).
        max_queries: most forward passes per image, counting the one on ``x`` that every attack makes:
            ``1 + popsize`` (initial population) ``+ popsize`` per generation; the last generation is cut
            short (only the first members get a trial) so that the budget is used exactly and never
            exceeded. ``None``: only ``generations`` limits the run. Must be ``>= 1 + popsize``.
        mutation: DE's scale factor F (in (0, 2]; default 0.5 as in Su et al.), or a pair ``(low, high)``
            to draw F uniformly per image and generation (dither).
        crossover: binomial crossover probability CR in (0, 1]; 1 (default, Su et al.) takes the mutant
            as it is.
        strategy: ``"rand1"`` (DE/rand/1: ``a + F (b - c)``, default) or ``"best1"`` (DE/best/1: the
            image's best candidate ``+ F (b - c)``); ``a, b, c`` are distinct members other than the one
            being replaced.
        confidence: with a value, success also needs the predicted (untargeted) or target class to have
            at least this probability (e.g. 0.9 for sparse generation).
        chunk_size: most candidate images per forward pass; ``None`` (default): a whole generation in one
            pass on an accelerator, and 512 images per pass on the CPU, where batches that fit the caches
            run about twice as fast per image as one huge batch (measured on mnist/cnn-small).
        early_stop: stop on each image at its first successful candidate (default True); without it every
            image runs the whole budget.

    ``loss`` (``"ce"``, default, or ``"margin"``, for class labels; the fitness is minus the loss),
    ``target``, ``bounds`` and ``seed`` are those of every :class:`~alva.attacks.base.Attack`.

    Initial candidates have rows, columns and values uniform in the image and the bounds. A mutant's
    row or column outside the image is drawn again uniformly; its values are clipped to the bounds.
    A trial replaces its parent when its fitness is lower or equal (Storn and Price).

    Result: ``x_adv`` is the image's first successful candidate (with early stop; the one of lowest
    fitness among the successful ones of that generation), else the best candidate of its final
    population (a successful one first), or ``x`` itself when ``x`` already succeeds (then queries is 1).
    ``steps`` counts the generations run; ``queries`` all forward passes on the image's candidates plus
    the one on ``x``; ``adv_logits`` are those already computed for the returned candidate (no extra
    query). ``extras``: ``pixels`` (N x k x 2 row and column of the returned candidate, -1 when ``x`` is
    returned), ``values`` (N x k x C), ``changed_pixels`` (pixels where ``x_adv`` differs from ``x``) and
    ``prob`` (the result's probability of the true class, or of the target class when targeted).
    """

    target_may_equal_label = True  # generate() makes images of each target from blank starts labelled so

    def __init__(self, model: torch.nn.Module, pixels: int = 1, popsize: int = 400, generations: int = 100, *,
                 max_queries: int | None = None, mutation: float | Sequence[float] = 0.5, crossover: float = 1.0,
                 strategy: str = "rand1", confidence: float | None = None, chunk_size: int | None = None,
                 early_stop: bool = True, **kwargs: Any) -> None:
        super().__init__(model, early_stop=early_stop, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("DifferentialEvolution needs a classifier with class labels")
        self.pixels = positive_int("pixels", pixels)
        self.popsize = positive_int("popsize", popsize)
        if self.popsize < 4:
            raise AttackInputError(f"popsize must be >= 4 (DE/rand/1 draws three other members), got {popsize}")
        self.generations = integer_at_least("generations", generations, 0)
        if max_queries is not None:
            max_queries = positive_int("max_queries", max_queries)
            if max_queries < 1 + self.popsize:
                raise AttackInputError(f"max_queries must be >= 1 + popsize = {1 + self.popsize} (the clean "
                                       f"image and the initial population), got {max_queries}")
        self.max_queries = max_queries
        if isinstance(mutation, (int, float)):
            mutation = (float(mutation), float(mutation))
        mutation = tuple(float(m) for m in mutation)
        if len(mutation) != 2 or not 0.0 < mutation[0] <= mutation[1] <= 2.0:
            raise AttackInputError(f"mutation must be a number in (0, 2] or a pair low <= high in it, got {mutation}")
        self.mutation = mutation
        self.crossover = in_interval("crossover", crossover, "(0, 1]")
        if strategy not in STRATEGIES:
            raise AttackInputError(f"unknown strategy {strategy!r}; choose one of {STRATEGIES}")
        self.strategy = strategy
        self.confidence = None if confidence is None else in_interval("confidence", confidence, "[0, 1]")
        if self.confidence is not None:
            self.loss = Confident(self.loss, self.confidence)
        self.chunk_size = None if chunk_size is None else positive_int("chunk_size", chunk_size)

    @property
    def budget(self) -> int:
        """Most queries per image: the forward pass on ``x`` and every candidate evaluation."""
        return super().budget if self.max_queries is None else min(super().budget, self.max_queries)

    def chunk_for(self, device: torch.device, total: int) -> int:
        """Candidate images per forward pass on ``device`` for a generation of ``total`` candidates."""
        if self.chunk_size is not None:
            return self.chunk_size
        return CPU_CHUNK if torch.device(device).type == "cpu" else max(total, 1)

    def generate(self, targets: torch.Tensor, shape: tuple[int, ...] | None = None) -> AttackResult:
        """Sparse images of the classes ``targets``: k pixels set on a blank image of ``shape`` (default: the
        input shape on the model's card; every entry at the lower bound), a targeted attack on it."""
        return self(blank_starts(self, targets, shape), targets, target=targets)

    # -- the attack: a population search on the engine -------------------------------------------------

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        run = Run(self, x, y, target, clean_logits, generator, self.rule)
        run.carried["candidate"] = torch.full((len(x), self.pixels, 2 + _Layout(x).channels), -1.0,
                                              device=x.device, dtype=x.dtype)
        self.repeat(run, self.restarts)
        return self.finish(run)

    def start(self, run: Run, rows: PopulationRows) -> torch.Tensor:
        return self._random_params(run.uniform(rows, rows.stream), self.popsize, _Layout(rows.x0))

    def propose(self, run: Run, rows: PopulationRows, members: int) -> torch.Tensor:
        """Trial vectors for the first ``members`` members of each image's population: DE/rand/1 or DE/best/1
        mutation, binomial crossover, repair; every random number keyed per image (stream ``rows.stream``)."""
        pop, layout = rows.population, _Layout(rows.x0)
        n = len(pop)

        def uniform(part: int, k: int) -> torch.Tensor:
            return run.uniform(rows, (*rows.stream, part))(k).to(pop.dtype)

        others = _distinct_others(lambda k: uniform(0, k), pop.shape[1], members, 3)  # n x members x 3
        image = torch.arange(n, device=pop.device)[:, None]
        a, b, c = (pop[image, others[..., j]] for j in range(3))
        if self.strategy == "best1":
            a = pop[image[:, 0], rows.objective.argmax(dim=1)][:, None].expand_as(b)
        lo_f, hi_f = self.mutation
        mutant = a + (lo_f + (hi_f - lo_f) * uniform(1, 1)).view(n, 1, 1, 1) * (b - c)
        if self.crossover < 1.0:
            flat = mutant.flatten(2)
            size = flat.shape[2]
            take = (uniform(2, members * size) < self.crossover).view(flat.shape)
            take.scatter_(2, _integers(uniform(3, members), size).view(n, members, 1), True)
            mutant = torch.where(take, flat, pop[:, :members].flatten(2)).view_as(mutant)
        return self._repair(mutant, layout, uniform(4, members * self.pixels * 2))

    def candidate_logits(self, rows: PopulationRows, candidates: torch.Tensor) -> torch.Tensor:
        """One forward pass over all candidates, in chunks of ``chunk_size`` images."""
        n, m = candidates.shape[:2]
        flat = candidates.flatten(0, 1)
        owner = torch.arange(n, device=flat.device).repeat_interleave(m)
        labels = rows.y.repeat_interleave(m)
        chunk = self.chunk_for(flat.device, n * m)
        return torch.cat([self.predict(self.images(rows, owner[i:i + chunk], flat[i:i + chunk]), labels[i:i + chunk])
                          for i in range(0, n * m, chunk)])

    def images(self, rows: PopulationRows, local: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return _Layout(rows.x0).apply(rows.x0, local, candidates)

    def finish(self, run: Run) -> AttackResult:
        layout, params = _Layout(run.x), run.carried["candidate"]
        pixels = layout.positions(params)
        pixels = torch.stack([pixels // layout.width, pixels % layout.width], dim=-1)
        pixels[params[:, 0, 0] < 0] = -1  # x itself is the result
        return run.result({
            "pixels": pixels,
            "values": params[..., 2:].clamp(*self.bounds),
            "changed_pixels": pixel_l0(run.best_x - run.x, 0.0, 0.0),
            "prob": class_probability(run.best_logits, run.y if run.target is None else run.target),
        })

    def _random_params(self, uniform: Uniform, m: int, layout: _Layout) -> torch.Tensor:
        """n x m x k x (2 + C) uniform candidates: rows in [0, H), columns in [0, W), values in the bounds."""
        lo, hi = self.bounds
        u = uniform(m * self.pixels * (2 + layout.channels)).to(layout.dtype)
        scale = torch.tensor([layout.height, layout.width] + [hi - lo] * layout.channels, device=layout.device,
                             dtype=layout.dtype)
        shift = torch.tensor([0.0, 0.0] + [lo] * layout.channels, device=layout.device, dtype=layout.dtype)
        return u.view(len(u), m, self.pixels, 2 + layout.channels) * scale + shift

    def _repair(self, params: torch.Tensor, layout: _Layout, u: torch.Tensor) -> torch.Tensor:
        """Rows and columns outside the image drawn again uniformly from ``u`` (``n x (m * k * 2)`` numbers in
        [0, 1)); values clipped to the bounds."""
        limits = torch.tensor([layout.height, layout.width], device=params.device, dtype=params.dtype)
        pos = params[..., :2]
        outside = (pos < 0) | (pos >= limits)
        pos = torch.where(outside, u.view_as(pos) * limits, pos)
        return torch.cat([pos, params[..., 2:].clamp(*self.bounds)], dim=-1)


class OnePixel(DifferentialEvolution):
    """:class:`DifferentialEvolution` under the name of the one-pixel attack (Su et al. 2019): ``pixels=1`` by
    default."""


class _Layout:
    """How candidates map onto a batch: ``N x C x H x W`` (C channels), ``N x H x W`` and ``N x D``
    (one channel; a flat vector is one row of D pixels)."""

    def __init__(self, x: torch.Tensor) -> None:
        shape = x.shape[1:]
        if x.ndim >= 4:
            self.channels, self.height, self.width = shape[0], math.prod(shape[1:-1]), shape[-1]
        elif x.ndim == 3:
            self.channels, self.height, self.width = 1, shape[0], shape[1]
        else:
            self.channels, self.height, self.width = 1, 1, shape[0]
        self.shape = tuple(shape)
        self.device, self.dtype = x.device, x.dtype

    def positions(self, params: torch.Tensor) -> torch.Tensor:
        """Flat pixel index (row * W + col) of each tuple, rows and columns floored and kept in the image."""
        row = params[..., 0].floor().clamp(0, self.height - 1).long()
        col = params[..., 1].floor().clamp(0, self.width - 1).long()
        return row * self.width + col

    def apply(self, x: torch.Tensor, owner: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Images ``x[owner]`` with the pixels of ``params`` (M x k x D) set: M x shape."""
        images = x.reshape(len(x), self.channels, -1).index_select(0, owner)  # M x C x P, a copy
        pos = self.positions(params)
        lo_hi = params[..., 2:]
        rows = torch.arange(len(images), device=images.device)
        for j in range(pos.shape[1]):  # a later tuple on the same pixel wins
            images[rows, :, pos[:, j]] = lo_hi[:, j].to(images.dtype)
        return images.view(len(images), *self.shape)


def _integers(u: torch.Tensor, high: int) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` from numbers ``u`` uniform in [0, 1)."""
    return (u * high).long().clamp_(max=high - 1)


def _distinct_others(uniform: Uniform, size: int, members: int, count: int) -> torch.Tensor:
    """``n x members x count`` indices in ``[0, size)`` (``n``: the rows of ``uniform``): for member i, ``count``
    distinct indices other than i."""
    u = uniform(members * count)
    excluded = torch.arange(members, device=u.device).expand(len(u), members)[..., None]
    for j, part in enumerate(u.view(len(u), count, members).unbind(1)):
        r = _integers(part, size - 1 - j)
        for e in excluded.sort(dim=-1).values.unbind(-1):
            r = r + (r >= e).long()
        excluded = torch.cat([excluded, r[..., None]], dim=-1)
    return excluded[..., 1:]
