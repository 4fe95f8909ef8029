"""SimBA, the simple black-box attack (Guo, Gardner, You, Wilson and Weinberger 2019, "Simple Black-box
Adversarial Attacks"): a score-based search along orthonormal directions.

Each sample walks through the directions of an orthonormal basis in a random order of its own (drawn without
replacement; a new pass in the same order once all have been tried): a step of size ``step`` along ``+q`` is
kept when the probability of the true class falls (of the target class rises), else the step along ``-q`` is
tried and kept on the same condition. The basis is the pixel basis or the low-frequency-first DCT basis
(SimBA-DCT: the 2-D DCT-II basis of each channel, coefficients of low frequency tried before the others).

A candidate that the bounds (or the eps ball) leave equal to the current point is skipped without a query.
Queries are counted per sample and include the clean forward pass and the query of the starting point (the
clean point); a sample gets at most ``n_queries`` and, with early stop (the default), none after the one that
broke it. The order of the directions comes from keyed random numbers of the sample, so a sample's search does
not depend on its batch.
"""

from __future__ import annotations

import functools
import math
from typing import cast

import torch
import torch.nn.functional as F

from alva.attacks.engine import Rows, Run, SearchAttack
from alva.attacks.errors import AttackInputError, finite, positive_int
from alva.attacks.norms import Norm, get_norm

__all__ = ["BASES", "SimBA", "SimBARows", "dct_matrix", "probability"]

BASES = ("pixel", "dct")
_SKIPS = 4  # futile candidates skipped per query, at most


def probability(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """The probability of the target class (to raise), or minus that of the true class: SimBA's objective."""
    p = F.softmax(logits, dim=1).gather(1, labels[:, None]).squeeze(1)
    return p if targeted else -p


@functools.lru_cache(maxsize=16)
def dct_matrix(n: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal DCT-II matrix of size n (row k: the k-th cosine over the n positions; cached: do not
    change it)."""
    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m.to(device=device, dtype=dtype)


def _image_shape(x: torch.Tensor) -> tuple[int, int, int]:
    """(C, H, W) of a batch; a flat batch (N x D) is 1 x 1 x D."""
    if x.ndim == 2:
        return 1, 1, x.shape[1]
    return x[0].numel() // (x.shape[-2] * x.shape[-1]), x.shape[-2], x.shape[-1]


class SimBARows(Rows):
    """The rows of a SimBA search: each sample's order of directions, its place in it and the sign to try."""

    order: torch.Tensor
    position: torch.Tensor
    minus: torch.Tensor


class SimBA(SearchAttack):
    """Score-based search along orthonormal directions, one query per candidate step.

    Args:
        eps: radius of the ball around x that every point stays in (candidates are projected onto it), in the
            units of ``norm``; None: no ball (the paper's setting: the distance is what it measures).
        n_queries: the per-sample budget of model evaluations, the clean one included.
        step: the length of each step along a direction (the paper's epsilon: 0.2).
        basis: ``"pixel"`` or ``"dct"`` (low frequencies first).
        freq_dims: with the DCT basis, the side of the block of lowest frequencies tried first; the next
            bands of width ``freq_dims`` follow (default: a quarter of the image side).
        norm: the norm of the ball: ``"l2"`` (the paper's measure) or ``"linf"``.
        loss: the objective to raise; default ``"prob"`` (minus the true class's probability, or the target's);
            ``"margin"``, ``"ce"`` or any loss of :class:`~alva.attacks.base.Attack`.
        early_stop: stop querying a sample once it succeeds (default True here).

    ``target``, ``bounds`` and ``seed`` are those of every attack. ``steps`` counts the candidate queries.
    """

    rows_type = SimBARows

    def __init__(self, model: torch.nn.Module, eps: float | None = None, n_queries: int = 10000, *,
                 step: float = 0.2, basis: str = "dct", freq_dims: int | None = None, norm: str | Norm = "l2",
                 loss="prob", early_stop: bool = True, **kwargs) -> None:
        super().__init__(model, loss=probability if loss == "prob" else loss, early_stop=early_stop, **kwargs)
        self.eps = None if eps is None else finite("eps", eps)
        self.n_queries = positive_int("n_queries", n_queries)
        self.step = finite("step", step, strict=True)
        if basis not in BASES:
            raise AttackInputError(f"basis must be one of {BASES}, got {basis!r}")
        self.basis = basis
        self.freq_dims = None if freq_dims is None else positive_int("freq_dims", freq_dims)
        self.norm = get_norm(norm)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        state = cast(SimBARows, rows)
        c, h, w = _image_shape(rows.x0)
        keys = run.uniform(rows, (0,))(c * h * w)
        if self.basis == "dct":
            freq = self.freq_dims or max(1, math.ceil(min(h, w) / 4))
            u, v = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            band = ((torch.maximum(u, v) - freq).clamp_min(-1) // freq + 1).to(keys.device)
            keys = keys + band.flatten().repeat(c)
        state.order = keys.argsort(dim=1)
        state.position = torch.zeros(rows.n, dtype=torch.long, device=keys.device)
        state.minus = torch.zeros(rows.n, dtype=torch.bool, device=keys.device)
        return rows.x0

    def direction(self, rows: SimBARows, shape: tuple[int, int, int]) -> torch.Tensor:
        """The current unit direction of each row, as an N x C x H x W batch."""
        c, h, w = shape
        coord = rows.order.gather(1, (rows.position % (c * h * w))[:, None]).squeeze(1)
        if self.basis == "pixel":
            return F.one_hot(coord, c * h * w).to(rows.x0.dtype).view(rows.n, c, h, w)
        rows_h, rows_w = dct_matrix(h, coord.device, rows.x0.dtype), dct_matrix(w, coord.device, rows.x0.dtype)
        channel, frequency = coord // (h * w), coord % (h * w)
        image = rows_h[frequency // w][:, :, None] * rows_w[frequency % w][:, None, :]
        return F.one_hot(channel, c).to(image.dtype)[:, :, None, None] * image[:, None]

    def candidate(self, rows: SimBARows) -> torch.Tensor:
        shape = _image_shape(rows.x0)
        sign = torch.where(rows.minus, -self.step, self.step).to(rows.x0.dtype)
        moved = rows.x + (sign.view(-1, 1, 1, 1) * self.direction(rows, shape)).view_as(rows.x)
        if self.eps is not None:
            moved = rows.x0 + self.norm.project(moved - rows.x0, self.eps)
        return moved.clamp_(*self.bounds)

    def advance(self, rows: SimBARows, tried: torch.Tensor) -> None:
        """The rows ``tried`` leave their candidate unkept: next the step along -q, after it the next direction."""
        rows.position = rows.position + (tried & rows.minus).long()
        rows.minus = rows.minus ^ tried

    def propose(self, run: Run, rows: Rows, step: int) -> torch.Tensor:
        state = cast(SimBARows, rows)
        for _ in range(_SKIPS):
            cand = self.candidate(state)
            futile = (cand == rows.x).reshape(rows.n, -1).all(dim=1)
            if not futile.any():
                break
            self.advance(state, futile)
        return cand

    def accept(self, rows: Rows, success: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
        state = cast(SimBARows, rows)
        accept = super().accept(rows, success, objective)
        state.position = state.position + (accept | state.minus).long()  # a kept +q, or a tried -q: next direction
        state.minus = ~state.minus & ~accept
        return accept
