"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion and Hein 2022, "Sparse-RS: a versatile framework for
query-efficient sparse black-box adversarial attacks"), its L0 attack: change at most ``k`` pixels.

Score-based: only the model's outputs are read. The perturbation is a set of ``k`` pixels, each set to a
vertex of the box (every channel at the lower or the upper bound). The search starts from ``k`` random pixels
with random vertices; each step swaps ``m`` of the chosen pixels for ``m`` pixels not chosen, with new random
vertices, and keeps the swap when the objective (the margin by default, positive exactly at success) rises.
``m = max(round(alpha * k), 1)``, where ``alpha`` starts at ``p_init`` and halves after steps 0, 50, 200, 500,
1000, 2000, 4000, 6000 and 8000 of 10000 (rescaled to the budget), the schedule of the paper.

A pixel is a position of the image (all channels at ``(h, w)`` for ``N x C x H x W`` batches, one entry for
flat batches), as everywhere in alva (:mod:`alva.attacks.sparse`): the result differs from ``x`` in at most
``k`` pixels. A new vertex that equals the clean pixel is flipped to the opposite vertex, so no query is spent
on a swap that changes nothing there. The engine (:class:`~alva.attacks.engine.SearchAttack`) owns the loop,
the exact per-sample query count and the hard ``n_queries`` budget; random numbers are keyed per sample.
"""

from __future__ import annotations

import torch

from alva.attacks.base import AttackResult
from alva.attacks.engine import Rows, Run, SearchAttack
from alva.attacks.errors import in_interval, positive_int

__all__ = ["SparseRS", "SparseRSRows", "changed_pixels", "sparse_rs_alpha"]

_HALVINGS = (0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 steps (Croce et al. 2022)


def sparse_rs_alpha(p_init: float, step: int, n_queries: int) -> float:
    """The share of the ``k`` pixels swapped at ``step`` of a search with a budget of ``n_queries``."""
    scaled = int(step / max(n_queries, 1) * 10000)
    return p_init / 2 ** sum(scaled > t for t in _HALVINGS)


def changed_pixels(x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
    """The number of pixels (all channels of a position of a 4-D batch; an entry otherwise) where ``x_adv``
    differs from ``x``, per sample."""
    diff = x_adv != x
    if diff.ndim >= 4:
        diff = diff.any(dim=1)
    return diff.reshape(len(x), -1).sum(dim=1)


class SparseRSRows(Rows):
    """The per-row state of a Sparse-RS search: the chosen pixels and their vertices, and the last proposal's."""

    pixels: torch.Tensor
    vertices: torch.Tensor
    proposed_pixels: torch.Tensor
    proposed_vertices: torch.Tensor


def _channels_pixels(x: torch.Tensor) -> tuple[int, int]:
    """(channels, pixels) of a batch's images."""
    if x.ndim >= 4:
        return x.shape[1], x[0, 0].numel()
    return 1, x[0].numel()


class SparseRS(SearchAttack):
    """Sparse-RS under L0: random search over sets of ``k`` pixels set to vertices of the box.

    Args:
        k: the most pixels changed (the L0 budget).
        n_queries: the per-sample budget of model evaluations, the clean one included (Croce et al.: 10000).
        p_init: the share of the ``k`` pixels swapped at the first step (in (0, 1]; 0.3 as in the paper's
            untargeted L0 attack).
        loss: the objective to raise; default ``"margin"`` (positive at success), or ``"ce"``.
        early_stop: stop querying a sample once it succeeds (default True).

    ``target``, ``bounds`` and ``seed`` are those of every attack; a target makes the search targeted (the
    targeted margin). ``extras["changed_pixels"]``: the pixels where ``x_adv`` differs from ``x``.
    """

    rows_type = SparseRSRows

    def __init__(self, model: torch.nn.Module, k: int = 10, n_queries: int = 1000, *, p_init: float = 0.3,
                 loss="margin", early_stop: bool = True, **kwargs) -> None:
        super().__init__(model, loss=loss, early_stop=early_stop, **kwargs)
        self.k = positive_int("k", k)
        self.n_queries = positive_int("n_queries", n_queries)
        self.p_init = in_interval("p_init", p_init, "(0, 1]")

    def _image(self, rows: Rows, pixels: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
        """The clean images of ``rows`` with ``pixels`` (n x k) set to ``vertices`` (n x c x k)."""
        c, p = _channels_pixels(rows.x0)
        image = rows.x0.reshape(rows.n, c, p).clone()
        image.scatter_(2, pixels[:, None, :].expand(-1, c, -1), vertices)
        return image.view_as(rows.x0)

    def _vertices(self, rows: Rows, pixels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Random vertices (n x c x m) for ``pixels`` (n x m) from the numbers ``u`` (n x c*m); a vertex equal
        to the clean pixel is flipped."""
        lo, hi = self.bounds
        c, p = _channels_pixels(rows.x0)
        high = (u < 0.5).view(rows.n, c, -1)
        clean = rows.x0.reshape(rows.n, c, p).gather(2, pixels[:, None, :].expand(-1, c, -1))
        same = (torch.where(high, hi, lo) == clean).all(dim=1, keepdim=True)
        return torch.where(high ^ same, hi, lo).to(rows.x0.dtype)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        assert isinstance(rows, SparseRSRows)  # the engine builds the declared rows_type
        c, p = _channels_pixels(rows.x0)
        k = min(self.k, p)
        u = run.uniform(rows, (0,))(p + c * k)
        rows.pixels = u[:, :p].argsort(dim=1)[:, :k]
        rows.vertices = self._vertices(rows, rows.pixels, u[:, p:])
        return self._image(rows, rows.pixels, rows.vertices)

    def propose(self, run: Run, rows: Rows, step: int) -> torch.Tensor:
        assert isinstance(rows, SparseRSRows)
        c, p = _channels_pixels(rows.x0)
        k = rows.pixels.shape[1]
        m = k if k == p else min(max(round(sparse_rs_alpha(self.p_init, step, self.n_queries) * k), 1), p - k)
        u = run.uniform(rows, (1, step))(k + p + c * m)
        if k == p:  # every pixel is chosen: new vertices only
            slots, free = torch.arange(k, device=u.device).expand(rows.n, -1), rows.pixels
        else:
            slots = u[:, :k].argsort(dim=1)[:, :m]  # which chosen pixels leave
            free = u[:, k:k + p].scatter(1, rows.pixels, 2.0).argsort(dim=1)[:, :m]  # chosen ones sort last
        pixels = rows.pixels.scatter(1, slots, free)
        vertices = rows.vertices.scatter(2, slots[:, None, :].expand(-1, c, -1),
                                         self._vertices(rows, free, u[:, k + p:]))
        rows.proposed_pixels, rows.proposed_vertices = pixels, vertices
        return self._image(rows, pixels, vertices)

    def accept(self, rows: Rows, success: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
        """The engine's rule; the accepted swaps also become the rows' pixel sets."""
        accept = super().accept(rows, success, objective)
        assert isinstance(rows, SparseRSRows)
        rows.pixels = torch.where(accept[:, None], rows.proposed_pixels, rows.pixels)
        rows.vertices = torch.where(accept[:, None, None], rows.proposed_vertices, rows.vertices)
        return accept

    def finish(self, run: Run) -> AttackResult:
        return run.result({"changed_pixels": changed_pixels(run.x, run.best_x)})
