"""Differential evolution on k pixels: the one-pixel attack of Su, Vargas and Sakurai (2019, "One pixel
attack for fooling deep neural networks"), with the DE/rand/1 scheme of Storn and Price (1997).

Black-box: only the model's output probabilities are used (no gradients; every forward pass runs under
``torch.no_grad``), and every forward pass is counted as a query of the image it belongs to.

A candidate is ``k`` tuples ``(row, col, value_1, ..., value_C)``: it sets the ``C`` channels of ``k``
pixels of the base image (``x``) to the given values, so the result differs from ``x`` in at most ``k``
pixels. A population of ``popsize`` candidates per image evolves for up to ``generations`` generations;
the populations of all images still attacked evolve together, each generation costing one batched
forward pass (on the CPU split into chunks of 512 images, which run faster; see ``chunk_size``), with no
loop over images.

Fitness (minimised): minus the attack loss, so by default (``loss="ce"``) the log-probability of the true
class (untargeted) or minus that of the target class (targeted), computed from the logits (log-softmax).
Su et al. minimise the probability itself; the log ranks candidates in the same order but does not
saturate: on the shipped MNIST models the true-class probability of almost every one-pixel candidate is
1.0 in float32, and ties would leave selection blind. ``loss="margin"`` uses the logit margin instead.
A candidate *succeeds* when the attack loss says so: it is misclassified (untargeted) or classified as the
target (targeted) and, with ``confidence`` set, that class has at least that probability
(:class:`~alva.attacks.losses.Confident`).

Two uses: attacks on real images (``attack(x, y)``, ``attack(x, y, target=t)``), and, as a black-box
"different process" for the fake-class training metrics, generation of sparse images of a class from a
blank image (:meth:`DifferentialEvolution.generate`, e.g. ``pixels=30, confidence=0.9``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from alva.attacks.base import Attack, AttackInputError, AttackResult
from alva.attacks.errors import in_interval, positive_int
from alva.attacks.losses import ClassLoss, Confident
from alva.attacks.sparse import blank_images

__all__ = ["DifferentialEvolution", "OnePixel"]

STRATEGIES = ("rand1", "best1")
CPU_CHUNK = 512  # candidate images per forward pass on the CPU (see DifferentialEvolution's chunk_size)


class DifferentialEvolution(Attack):
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
        loss, target, bounds, seed: as for every :class:`~alva.attacks.base.Attack`; the fitness is minus
            the loss (``"ce"``, default, or ``"margin"``, for class labels).

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
        if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
            raise AttackInputError(f"generations must be an integer >= 0, got {generations!r}")
        self.generations = int(generations)
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
        full = 1 + self.popsize * (1 + self.generations)
        return full if self.max_queries is None else min(full, self.max_queries)

    def chunk_for(self, device: torch.device, total: int) -> int:
        """Candidate images per forward pass on ``device`` for a generation of ``total`` candidates."""
        if self.chunk_size is not None:
            return self.chunk_size
        return CPU_CHUNK if torch.device(device).type == "cpu" else max(total, 1)

    def generate(self, targets: torch.Tensor, shape: tuple[int, ...] = (1, 28, 28)) -> AttackResult:
        """Sparse images of the classes ``targets``: k pixels set on a blank image (every entry at the
        lower bound), a targeted attack on it."""
        if not isinstance(targets, torch.Tensor):
            raise AttackInputError("targets must be a tensor of class labels")
        return self(blank_images(len(targets), shape, self.bounds[0], device=targets.device), targets, target=targets)

    # -- the attack -------------------------------------------------------------------------------------

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        n, device = len(x), x.device
        targeted = target is not None
        layout = _Layout(x)
        base = layout.flat(x)  # N x C x P
        labels = target if targeted else y
        steps = torch.zeros(n, dtype=torch.long, device=device)
        queries = torch.ones(n, dtype=torch.long, device=device)
        best_params = torch.full((n, self.pixels, 2 + layout.channels), -1.0, device=device, dtype=x.dtype)
        adv_logits = clean_logits.clone()
        success = self.loss.success(clean_logits, y, target)
        idx = (~success).nonzero().squeeze(1) if self.early_stop else torch.arange(n, device=device)
        found = _Found(best_params, adv_logits, success)
        evaluations = self.budget - 1  # candidate evaluations each image may use
        if len(idx):
            pop = self._random_params(len(idx), self.popsize, layout, generator)
            fit, logits, ok = self._evaluate(base, idx, pop, labels, targeted, layout)
            queries[idx] += self.popsize
            evaluations -= self.popsize
            if self.early_stop:
                idx, (pop, fit, logits, ok) = found.take_hits(idx, pop, fit, logits, ok)
        for _ in range(self.generations):
            members = min(self.popsize, evaluations)
            if members <= 0 or len(idx) == 0:
                break
            trials = self._trials(pop, fit, members, layout, generator)
            t_fit, t_logits, t_ok = self._evaluate(base, idx, trials, labels, targeted, layout)
            queries[idx] += members
            steps[idx] += 1
            evaluations -= members
            if self.early_stop:  # only the new candidates can succeed: the population was checked before
                idx, (pop, fit, logits, ok, trials, t_fit, t_logits, t_ok) = found.take_hits(
                    idx, trials, t_fit, t_logits, t_ok, also=(pop, fit, logits, ok))
            better = t_fit <= fit[:, :members]  # Storn and Price: a trial as good as its parent replaces it
            for kept, new in ((pop, trials), (fit, t_fit), (logits, t_logits), (ok, t_ok)):
                kept[:, :members][better] = new[better]
        if len(idx):
            found.store(torch.ones(len(idx), dtype=torch.bool, device=device), idx, pop, fit, logits, ok)
        x_adv = x.clone()
        changed = best_params[:, 0, 0] >= 0
        if changed.any():
            rows = changed.nonzero().squeeze(1)
            x_adv[rows] = layout.apply(base, rows, best_params[rows])
        pixels = layout.positions(best_params)
        pixels = torch.stack([pixels // layout.width, pixels % layout.width], dim=-1)
        pixels[~changed] = -1
        extras = {
            "pixels": pixels,
            "values": best_params[..., 2:].clamp(*self.bounds),
            "changed_pixels": _changed_pixels(x, x_adv),
            "prob": adv_logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1),
        }
        return AttackResult(x_adv, success, steps, queries, adv_logits, clean_logits, target, extras)

    def _random_params(self, n: int, m: int, layout: _Layout, generator: torch.Generator | None) -> torch.Tensor:
        """n x m x k x (2 + C) uniform candidates: rows in [0, H), columns in [0, W), values in the bounds."""
        lo, hi = self.bounds
        u = torch.rand((n, m, self.pixels, 2 + layout.channels), generator=generator, device=layout.device,
                       dtype=layout.dtype)
        scale = torch.tensor([layout.height, layout.width] + [hi - lo] * layout.channels, device=layout.device,
                             dtype=layout.dtype)
        shift = torch.tensor([0.0, 0.0] + [lo] * layout.channels, device=layout.device, dtype=layout.dtype)
        return u * scale + shift

    def _trials(self, pop: torch.Tensor, fit: torch.Tensor, members: int, layout: _Layout,
                generator: torch.Generator | None) -> torch.Tensor:
        """Trial vectors for the first ``members`` members of each image's population."""
        n, size = pop.shape[:2]
        device = pop.device
        others = _distinct_others(n, size, members, 3, generator, device)  # n x members x 3
        rows = torch.arange(n, device=device)[:, None]
        a, b, c = (pop[rows, others[..., j]] for j in range(3))
        if self.strategy == "best1":
            a = pop[torch.arange(n, device=device), fit.argmin(dim=1)][:, None].expand_as(b)
        lo_f, hi_f = self.mutation
        scale = lo_f + (hi_f - lo_f) * torch.rand((n, 1, 1, 1), generator=generator, device=device, dtype=pop.dtype)
        mutant = a + scale * (b - c)
        if self.crossover < 1.0:
            flat = mutant.flatten(2)
            parent = pop[:, :members].flatten(2)
            take = torch.rand(flat.shape, generator=generator, device=device) < self.crossover
            forced = torch.randint(0, flat.shape[2], (n, members, 1), generator=generator, device=device)
            take.scatter_(2, forced, True)
            mutant = torch.where(take, flat, parent).view_as(mutant)
        return self._repair(mutant, layout, generator)

    def _repair(self, params: torch.Tensor, layout: _Layout, generator: torch.Generator | None) -> torch.Tensor:
        """Rows and columns outside the image drawn again uniformly; values clipped to the bounds."""
        lo, hi = self.bounds
        fresh = self._random_params(params.shape[0], params.shape[1], layout, generator)
        pos = params[..., :2]
        limits = torch.tensor([layout.height, layout.width], device=params.device, dtype=params.dtype)
        outside = (pos < 0) | (pos >= limits)
        pos = torch.where(outside, fresh[..., :2], pos)
        return torch.cat([pos, params[..., 2:].clamp(lo, hi)], dim=-1)

    def _evaluate(self, base: torch.Tensor, idx: torch.Tensor, params: torch.Tensor, labels: torch.Tensor,
                  targeted: bool, layout: _Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fitness (n x m), logits (n x m x classes) and success (n x m) of the candidates ``params``
        (n x m x k x D) of the images ``idx``: one forward pass over all, in chunks of ``chunk_size``."""
        n, m = params.shape[:2]
        flat = params.flatten(0, 1)
        owner = idx.repeat_interleave(m)
        outs = []
        chunk = self.chunk_for(base.device, n * m)
        with torch.no_grad():
            for start in range(0, n * m, chunk):
                stop = min(start + chunk, n * m)
                outs.append(self.model(layout.apply(base, owner[start:stop], flat[start:stop])))
        logits = torch.cat(outs)
        own = labels.index_select(0, owner)
        own_target = own if targeted else None
        fitness = -self.loss(logits, own, own_target).view(n, m)
        ok = self.loss.success(logits, own, own_target).view(n, m)
        return fitness, logits.view(n, m, -1), ok


class _Found:
    """The results of finished images: the chosen candidate's parameters, its logits and its success."""

    def __init__(self, params: torch.Tensor, logits: torch.Tensor, success: torch.Tensor) -> None:
        self.params, self.logits, self.success = params, logits, success

    def store(self, rows: torch.Tensor, idx: torch.Tensor, cands: torch.Tensor, fit: torch.Tensor,
              logits: torch.Tensor, ok: torch.Tensor) -> None:
        """For the images ``idx[rows]``: keep the candidate of lowest fitness among the successful ones,
        else among all."""
        local = rows.nonzero().squeeze(1)
        ok, fit = ok[local], fit[local]
        best_ok = torch.where(ok, fit, torch.full_like(fit, math.inf)).argmin(dim=1)
        pick = torch.where(ok.any(dim=1), best_ok, fit.argmin(dim=1))
        out = idx[local]
        self.params[out] = cands[local, pick]
        self.logits[out] = logits[local, pick]
        self.success[out] = ok.gather(1, pick[:, None]).squeeze(1)

    def take_hits(self, idx: torch.Tensor, cands: torch.Tensor, fit: torch.Tensor, logits: torch.Tensor,
                  ok: torch.Tensor, also: tuple[torch.Tensor, ...] = ()
                  ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Store the images with a successful candidate; return the other images' rows of ``idx``, of the
        tensors ``also`` and of the candidates (in that order)."""
        tensors = (*also, cands, fit, logits, ok)
        hit = ok.any(dim=1)
        if not hit.any():
            return idx, tensors
        self.store(hit, idx, cands, fit, logits, ok)
        keep = ~hit
        return idx[keep], tuple(t[keep] for t in tensors)


class OnePixel(DifferentialEvolution):
    """:class:`DifferentialEvolution` with ``pixels=1`` by default: the one-pixel attack (Su et al. 2019)."""

    def __init__(self, model: torch.nn.Module, pixels: int = 1, popsize: int = 400, generations: int = 100,
                 **kwargs: Any) -> None:
        super().__init__(model, pixels, popsize, generations, **kwargs)


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

    def flat(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(len(x), self.channels, self.height * self.width)

    def positions(self, params: torch.Tensor) -> torch.Tensor:
        """Flat pixel index (row * W + col) of each tuple, rows and columns floored and kept in the image."""
        row = params[..., 0].floor().clamp(0, self.height - 1).long()
        col = params[..., 1].floor().clamp(0, self.width - 1).long()
        return row * self.width + col

    def apply(self, base: torch.Tensor, owner: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """Images ``base[owner]`` with the pixels of ``params`` (M x k x D) set: M x shape."""
        images = base.index_select(0, owner)  # M x C x P, a copy
        pos = self.positions(params)
        lo_hi = params[..., 2:]
        rows = torch.arange(len(images), device=images.device)
        for j in range(pos.shape[1]):  # a later tuple on the same pixel wins
            images[rows, :, pos[:, j]] = lo_hi[:, j].to(images.dtype)
        return images.view(len(images), *self.shape)


def _changed_pixels(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    diff = x_adv != x
    if diff.ndim >= 4:
        diff = diff.any(dim=1)
    return diff.reshape(len(x), -1).sum(dim=1)


def _distinct_others(n: int, size: int, members: int, count: int, generator: torch.Generator | None,
                     device: torch.device) -> torch.Tensor:
    """``n x members x count`` indices in ``[0, size)``: for member i, ``count`` distinct indices other than i."""
    excluded = torch.arange(members, device=device).expand(n, members)[..., None]
    for j in range(count):
        r = torch.randint(0, size - 1 - j, (n, members), generator=generator, device=device)
        for e in excluded.sort(dim=-1).values.unbind(-1):
            r = r + (r >= e).long()
        excluded = torch.cat([excluded, r[..., None]], dim=-1)
    return excluded[..., 1:]
