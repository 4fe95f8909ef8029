"""Decision-based attacks: the model under attack answers only with its predicted label.

:class:`LabelOnly` wraps a classifier so that its output is the one-hot vector of its argmax: no score, no
gradient, nothing else can leak. A :class:`DecisionAttack` wraps its model in it itself and looks for each
sample's closest adversarial point (a minimum-norm attack, :class:`~alva.attacks.minimum_norm.MinimumNormResult`)
in the steps every decision-based attack shares (after Brendel et al. 2018 and Chen et al. 2020):

1. a starting adversarial point per sample: a given starting batch (for a targeted attack: images the model
   puts in the target class), else uniform noise in the bounds, drawn until the model's label is adversarial;
2. a binary search on the segment from the clean point to it (a blend under L2, the box of the L-inf ball of
   a shrinking radius under L-inf), which ends on the adversarial side of the decision boundary;
3. the attack's own iterations (:meth:`DecisionAttack.iterate`) from that boundary point.

Every label the attack reads is a query, counted per sample by the engine's :class:`~alva.attacks.engine.Run`;
``max_queries`` (the clean query included) is a hard budget: no sample is ever queried more. All samples of a
batch are worked on together, each with its own budget, and every random number is keyed per sample
(:class:`~alva.attacks.keyed.KeyedRandom`), so a sample's result does not depend on its batch.

The returned ``adv_logits`` and ``clean_logits`` are the model's outputs at the returned and clean points,
computed once after the search for the caller (they are not queries: the search never sees them).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.base import AttackInputError
from alva.attacks.engine import Rows, Run
from alva.attacks.errors import integer_at_least, positive_int
from alva.attacks.minimum_norm import MinimumNormAttack, MinimumNormResult, distance_tolerance
from alva.attacks.norms import Norm, get_norm, per_sample

__all__ = ["DecisionAttack", "DecisionRows", "LabelOnly"]

_CHUNK = 4096  # points per forward pass of the label oracle


class LabelOnly(nn.Module):
    """``model`` that answers with the one-hot vector (float, N x classes) of its predicted class, and nothing
    else: the view of the model that a decision-based attack has."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits = self.model(x)
        dtype = logits.dtype if logits.is_floating_point() else torch.float32
        return F.one_hot(logits.argmax(dim=1), logits.shape[1]).to(dtype)


class DecisionRows(Rows):
    """The per-row state of a decision-based search: the current adversarial point ``x``, its predicted class
    ``label`` and its distance ``dist`` to the clean point."""

    label: torch.Tensor
    dist: torch.Tensor


class DecisionAttack(MinimumNormAttack):
    """Base of the decision-based attacks (label only, minimum norm, a hard query budget).

    Args:
        model: a classifier on images in ``bounds``; the attack sees only ``LabelOnly(model)``.
        max_queries: the most labels read per sample, the clean one included (never exceeded).
        norm: the norm minimised, among the attack's ``norms``.
        eps: None (minimum norm), or a radius: success needs the distance to be at most eps.
        init_attempts: the most uniform-noise draws per sample when looking for a starting point.
        early_stop: with ``eps``, stop querying a sample once its distance is within eps.
        target: a target rule (``"random"``, ``"least-likely"``); a tensor passed to the call overrides it.
        bounds: the valid pixel range.
        seed: seeds the keyed random numbers, so a call repeats exactly.

    A call takes ``start=`` too: a batch of starting points (adversarial ones are used, the others are
    replaced by noise search), e.g. images of each target class for a targeted attack.
    """

    norms: tuple[str, ...] = ("l2", "linf")
    rows_type = DecisionRows

    def __init__(self, model: nn.Module, max_queries: int = 1000, *, norm: str | Norm = "l2",
                 eps: float | None = None, init_attempts: int = 100, early_stop: bool = False,
                 target: str | None = None, bounds: tuple[float, float] = (0.0, 1.0), seed: int | None = None) -> None:
        super().__init__(model, loss="ce", target=target, early_stop=early_stop, bounds=bounds, seed=seed)
        self.oracle = LabelOnly(model)
        self.norm = get_norm(norm)
        if self.norm.name not in self.norms:
            raise AttackInputError(f"{type(self).__name__} minimises {' or '.join(self.norms)}, not {self.norm.name}")
        self.max_queries = integer_at_least("max_queries", max_queries, 2)
        self.init_attempts = positive_int("init_attempts", init_attempts)
        self.set_eps(eps)
        self._start: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None,
                 start: torch.Tensor | None = None) -> MinimumNormResult:
        """Attack ``(x, y)``; ``start``: optional starting points (same shape as ``x``, in the bounds)."""
        if start is not None:
            if not isinstance(start, torch.Tensor) or start.shape != x.shape:
                raise AttackInputError(f"start must be a tensor of the shape of x, {tuple(x.shape)}")
            if start.min() < self.bounds[0] or start.max() > self.bounds[1]:
                raise AttackInputError(f"start must lie in the bounds {self.bounds}")
        self._start = None if start is None else start.detach().to(x.device, x.dtype)
        try:
            result = super().__call__(x, y, target)
        finally:
            self._start = None
        assert isinstance(result, MinimumNormResult)
        return result

    def predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.oracle(x)

    # -- queries --------------------------------------------------------------------------------------------

    def left(self, run: Run, rows: Rows) -> torch.Tensor:
        """The queries each row may still spend."""
        return self.max_queries - run.queries[rows.rows]

    def decide(self, run: Run, rows: Rows, points: torch.Tensor, valid: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """The labels of ``points`` (n x k x ...: k per row) where ``valid`` (n x k), counted as queries of their
        rows; returns whether each point is adversarial (False where not valid) and its predicted class."""
        n, k = valid.shape
        flat = points.reshape(n * k, *points.shape[2:])
        labels = torch.full((n * k,), -1, dtype=torch.long, device=points.device)
        adversarial = torch.zeros(n * k, dtype=torch.bool, device=points.device)
        y = rows.y.repeat_interleave(k)
        target = None if rows.target is None else rows.target.repeat_interleave(k)
        parts: list[slice] | list[torch.Tensor]  # views where every point is asked about, else the chosen rows
        if bool(valid.all()):
            parts = [slice(first, first + _CHUNK) for first in range(0, n * k, _CHUNK)]
        else:
            parts = list(valid.reshape(-1).nonzero().squeeze(1).split(_CHUNK))
        for part in parts:
            chunk = flat[part]
            outputs = self.predict(chunk, y[part])
            labels[part] = outputs.argmax(dim=1)
            adversarial[part] = self.is_success(chunk, outputs, y[part], None if target is None else target[part])
        run.queries[rows.rows] += valid.sum(dim=1)
        return adversarial.view(n, k), labels.view(n, k)

    def decide_one(self, run: Run, rows: Rows, points: torch.Tensor, valid: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`decide` with one point per row."""
        adversarial, labels = self.decide(run, rows, points[:, None], valid[:, None])
        return adversarial[:, 0], labels[:, 0]

    def uniform(self, run: Run, rows: Rows, stream: tuple[int, ...], k: int) -> torch.Tensor:
        """n x k numbers in [0, 1), keyed per sample, in the dtype of the images."""
        assert rows.rows is not None  # a decision search always holds its rows' indices
        return run.random.uniform(rows.rows, stream, k).to(rows.x0.dtype)

    def uniform_pairs(self, run: Run, rows: Rows, stream: tuple[int, ...], k: int) -> torch.Tensor:
        """n x k numbers in (0, 1) on a grid of 4096, keyed per sample: each keyed 24-bit number gives two (its
        high and low 12 bits), which halves the hashing of the many numbers of random directions."""
        u = self.uniform(run, rows, stream, (k + 1) // 2) * 4096
        high = u.floor()
        return (torch.cat([high, (u - high) * 4096], dim=1)[:, :k] + 0.5) / 4096

    def normal(self, run: Run, rows: Rows, stream: tuple[int, ...], k: int) -> torch.Tensor:
        """n x k x d normal numbers, keyed per sample (Box-Muller on :meth:`uniform_pairs`, both outputs of each
        pair; the 12-bit grid bounds them by 4.1 in magnitude, which random directions do not notice)."""
        d = rows.x0[0].numel()
        half = (k * d + 1) // 2
        u = self.uniform_pairs(run, rows, stream, 2 * half)
        radius = torch.sqrt(-2 * torch.log(u[:, :half]))
        angle = (2 * math.pi) * u[:, half:]
        return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)[:, :k * d].view(rows.n, k, d)

    # -- the shared steps -----------------------------------------------------------------------------------

    def toward(self, x0: torch.Tensor, far: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The point at fraction ``alpha`` (per row) of the way from ``x0`` to ``far``: the blend under L2, the
        L-inf ball of radius ``alpha * ||far - x0||_inf`` projected onto under L-inf."""
        delta = far - x0
        if self.norm.name == "linf":
            radius = per_sample(alpha * self.norm.measure(delta), delta)
            return x0 + torch.maximum(torch.minimum(delta, radius), -radius)
        return x0 + per_sample(alpha, delta) * delta

    def binary_steps(self, tolerance: float) -> int:
        return max(1, math.ceil(math.log2(1.0 / tolerance)))

    def binary_search(self, run: Run, rows: Rows, far: torch.Tensor, searching: torch.Tensor, tolerance: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """For the rows where ``searching`` (``far`` adversarial there), the point closest to ``x0`` on the way to
        ``far`` known adversarial, to ``tolerance`` of the way (fewer steps where the budget ends); returns the
        points (``far`` elsewhere) and their labels (-1 where unchanged)."""
        low = torch.zeros(rows.n, dtype=rows.x0.dtype, device=rows.x0.device)
        high = torch.ones_like(low)
        label = torch.full((rows.n,), -1, dtype=torch.long, device=low.device)
        for _ in range(self.binary_steps(tolerance)):
            active = searching & (self.left(run, rows) >= 1)
            if not active.any():
                break
            middle = (low + high) / 2
            adversarial, found = self.decide_one(run, rows, self.toward(rows.x0, far, middle), active)
            up = active & adversarial
            high = torch.where(up, middle, high)
            low = torch.where(active & ~adversarial, middle, low)
            label = torch.where(up, found, label)
        return self.toward(rows.x0, far, high), label

    def starting_points(self, run: Run, rows: DecisionRows) -> torch.Tensor:
        """Finds an adversarial point per row (``rows.x``, ``rows.label``); returns which rows have one."""
        found = torch.zeros(rows.n, dtype=torch.bool, device=rows.x0.device)
        rows.x, rows.label = rows.x0.clone(), torch.full_like(rows.y, -1)
        if self._start is not None:
            candidate = self._start[rows.rows]
            found, rows.label = self.decide_one(run, rows, candidate, self.left(run, rows) >= 1)
            rows.x = torch.where(per_sample(found, candidate), candidate, rows.x)
        lo, hi = self.bounds
        for attempt in range(self.init_attempts):
            need = ~found & (self.left(run, rows) >= 1)
            if not need.any():
                break
            u = self.uniform(run, rows, (0, attempt), rows.x0[0].numel())
            noise = (lo + (hi - lo) * u).view_as(rows.x0)
            adversarial, label = self.decide_one(run, rows, noise, need)
            new = need & adversarial
            rows.x = torch.where(per_sample(new, noise), noise, rows.x)
            rows.label = torch.where(new, label, rows.label)
            found |= new
        return found

    def offer_current(self, run: Run, rows: DecisionRows) -> None:
        """Offer the rows' current adversarial points to the run (which keeps each sample's closest)."""
        rows.dist = self.distance(rows.x, rows.x0)
        outputs = F.one_hot(rows.label.clamp_min(0), run.clean_logits.shape[1]).to(run.clean_logits.dtype)
        self.offer_points(run, rows, rows.x, outputs)

    def settle(self, run: Run, rows: DecisionRows) -> None:
        """Drop the rows that are done: out of queries, or (early stop with eps) within eps."""
        done = self.left(run, rows) < 1
        if self.early_stop and self.eps is not None:
            done |= rows.dist <= self.eps + distance_tolerance(self.eps)
        if done.any():
            rows.keep(~done)

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        index = run.unbroken_rows()  # a clean point already misclassified is its own answer
        if len(index) == 0:
            return
        rows = run.rows(index, rows_type=self.rows_type)
        assert isinstance(rows, DecisionRows)
        with torch.no_grad():
            found = self.starting_points(run, rows)
            rows.keep(found)
            if rows.n == 0:
                return
            everyone = torch.ones(rows.n, dtype=torch.bool, device=rows.x0.device)
            boundary, label = self.binary_search(run, rows, rows.x, everyone, self.tolerance(rows.x0))
            rows.x, rows.label = boundary, torch.where(label >= 0, label, rows.label)
            self.offer_current(run, rows)
            self.settle(run, rows)
            if rows.n > 0:
                self.iterate(run, rows)

    def tolerance(self, x0: torch.Tensor) -> float:
        """The precision of the binary searches, as a fraction of the way (default: 1e-3)."""
        return 1e-3

    def iterate(self, run: Run, rows: DecisionRows) -> None:
        """The attack's iterations from the boundary points ``rows.x`` until the rows are done (they call
        :meth:`offer_current` after each change, :meth:`settle` and ``run.count_steps``)."""
        raise NotImplementedError

    def finish(self, run: Run) -> MinimumNormResult:
        result = super().finish(run)
        with torch.no_grad():
            adv_logits = torch.cat([self.model(part) for part in result.x_adv.split(_CHUNK)])
            clean_logits = torch.cat([self.model(part) for part in run.x.split(_CHUNK)])
        # The model's own verdict at the returned points (the same labels as the search read, unless the model's
        # arithmetic differs between batches at a point on the boundary).
        lost = result.success & ~self.is_success(result.x_adv, adv_logits, run.y, run.target)
        lost &= result.distances > 0
        if lost.any():
            result.success = result.success & ~lost
            result.distances = torch.where(lost, torch.full_like(result.distances, float("inf")), result.distances)
            result.x_adv = torch.where(per_sample(lost, run.x), run.x, result.x_adv)
            adv_logits = torch.where(lost[:, None], clean_logits, adv_logits)
        result.adv_logits, result.clean_logits = adv_logits, clean_logits
        return result
