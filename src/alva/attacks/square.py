"""Square Attack (Andriushchenko, Croce, Flammarion and Hein 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search"), under L-inf or L2.

A score-based black-box attack: it reads the model's outputs only (never a gradient) and performs a
random search in which each query changes the perturbation on a random square window and is kept when
the objective (by default the margin of the logits, positive exactly at success) improves.

L-inf: the search starts from vertical stripes ``x + eps * (+-1 per column)``; each step sets a square of
side ``s`` to ``x + eps * (+-1 per channel)``. L2: the search starts from a grid of pyramid-shaped
bumps with random signs scaled to norm eps; each step moves the perturbation's mass in two squares
(plus the unused part of the budget) into the first square, as a pair of opposite pyramids with a random
sign, keeping the norm at eps. The fraction ``p`` of pixels changed per step (``s ~ sqrt(p * h * w)``)
starts at ``p_init`` and halves at the paper's schedule (steps 10, 50, 200, 500, 1000, 2000, 4000, 6000
and 8000 of 10000), rescaled to the budget unless ``rescale_schedule=False`` (AutoAttack's setting: the steps
as they are, whatever the budget).

Queries are counted per sample and include the clean forward pass: a sample gets at most ``n_queries``
model evaluations, and with early stop (the default) none after the query that broke it. Random numbers
are keyed per sample (:class:`~alva.attacks.keyed.KeyedRandom`), so a sample's search does not depend on the
batch it is in. The geometry of the starting points and proposals belongs to the norm
(:meth:`~alva.attacks.norms.Norm.square_start`, :meth:`~alva.attacks.norms.Norm.square_proposal`).
"""

from __future__ import annotations

import math

import torch

from alva.attacks.engine import Rows, Run, SearchAttack
from alva.attacks.errors import AttackInputError, finite, in_interval, positive_int
from alva.attacks.norms import Norm, get_norm
from alva.attacks.square_geometry import pyramid, signs

__all__ = ["Square", "paired_l2_start", "square_p"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 steps (Andriushchenko et al., App. B)


def square_p(p_init: float, step: int, n_queries: int, rescale: bool = True) -> float:
    """The fraction of pixels changed at ``step`` of a search with a budget of ``n_queries`` (with ``rescale``,
    the schedule of 10000 steps is stretched or squeezed to the budget)."""
    scaled = int(step / max(n_queries, 1) * 10000) if rescale else step
    return p_init / 2 ** sum(scaled > t for t in _HALVINGS)


def paired_l2_start(x0: torch.Tensor, eps: float, uniform, bounds: tuple[float, float]) -> torch.Tensor:
    """AutoAttack's L2 starting point: a centred grid of s x s tiles (s = h // 5), each a pair of opposite bumps
    (the pattern of the L2 proposals, each half of unit norm) transposed at random, with a random sign per
    sample, channel and tile, the whole scaled to norm eps."""
    n, c, h, w = x0.shape
    s = max(min(h, w) // 5, 2)
    th, tw = h // s, w // s
    u = uniform(th * tw * (c + 1)).view(n, th * tw, c + 1)
    halves = [pyramid(s // 2, s, x0.device, x0.dtype), -pyramid(s - s // 2, s, x0.device, x0.dtype)]
    tile = torch.cat([half / half.norm() for half in halves])  # s x s: one bump above, the opposite below
    tiles = torch.where((u[:, :, -1] < 0.5)[:, :, None, None], tile.T, tile)  # n x tiles x s x s
    tiles = tiles[:, :, None] * signs(u[:, :, :c], x0.dtype)[..., None, None]  # n x tiles x c x s x s
    grid = tiles.view(n, th, tw, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(n, c, th * s, tw * s)
    top, left = (h - th * s) // 2, (w - tw * s) // 2
    delta = torch.zeros_like(x0)
    delta[:, :, top:top + th * s, left:left + tw * s] = grid
    delta = delta * (eps / delta.reshape(n, -1).norm(dim=1).clamp_min(1e-12)).view(n, 1, 1, 1)
    return (x0 + delta).clamp_(*bounds)


def _images(t: torch.Tensor) -> torch.Tensor:
    """The batch as n x c x h x w (a flat batch as n x 1 x 1 x d)."""
    return t.reshape(len(t), 1, 1, -1) if t.ndim == 2 else t.reshape(len(t), -1, *t.shape[-2:])


class Square(SearchAttack):
    """Score-based random search; uses the model's outputs only.

    Args:
        eps: radius of the ball (>= 0) in the units of ``norm``.
        n_queries: the per-sample budget of model evaluations, the clean one included (AutoAttack: 5000).
        norm: ``"linf"`` or ``"l2"``.
        p_init: the initial fraction of pixels changed per step (AutoAttack: 0.8).
        rescale_schedule: stretch the schedule of ``p`` (written for 10000 steps) to ``n_queries``; AutoAttack
            does not (False): with 5000 queries ``p`` then ends at ``p_init / 128``.
        l2_start: the L2 starting point: ``"bumps"``, a grid of single bumps over the whole image, or
            ``"pairs"``, AutoAttack's (:func:`paired_l2_start`).
        loss: the objective to raise; default ``"margin"`` (best other logit minus the true one, positive at
            success); ``"ce"`` or any loss of :class:`~alva.attacks.base.Attack`.
        early_stop: stop querying a sample once it succeeds (default True here).

    ``target``, ``bounds`` and ``seed`` are those of every attack.

    ``steps`` counts the random-search steps per sample (one query each, after the clean query and the
    query of the starting point).
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, n_queries: int = 5000, *,
                 norm: str | Norm = "linf", p_init: float = 0.8, rescale_schedule: bool = True,
                 l2_start: str = "bumps", loss="margin", early_stop: bool = True, **kwargs) -> None:
        super().__init__(model, loss=loss, early_stop=early_stop, **kwargs)
        self.eps = finite("eps", eps)
        self.p_init = in_interval("p_init", p_init, "(0, 1]")
        self.n_queries = positive_int("n_queries", n_queries)
        self.rescale_schedule = bool(rescale_schedule)
        if l2_start not in ("bumps", "pairs"):
            raise AttackInputError(f"l2_start must be 'bumps' or 'pairs', got {l2_start!r}")
        self.l2_start = l2_start
        self.norm = get_norm(norm)
        if type(self.norm).square_proposal is Norm.square_proposal:
            raise AttackInputError(f"Square has no proposals for the norm {self.norm!r}")

    def search(self, run, index, restart) -> None:
        if self.eps > 0:
            super().search(run, index, restart)

    def _side(self, step: int, h: int, w: int) -> int:
        p = square_p(self.p_init, step, self.n_queries, self.rescale_schedule)
        return int(min(max(round(math.sqrt(p * h * w)), 1), max(min(h, w) - 1, 1)))

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        x0 = rows.x0
        start = paired_l2_start if self.norm.name == "l2" and self.l2_start == "pairs" else self.norm.square_start
        return start(_images(x0), self.eps, run.uniform(rows, (0,)), self.bounds).view_as(x0)

    def propose(self, run: Run, rows: Rows, step: int) -> torch.Tensor:
        x0, cur = _images(rows.x0), _images(rows.x)
        side = self._side(step, *x0.shape[-2:])
        return self.norm.square_proposal(x0, cur, self.eps, side, run.uniform(rows, (1, step)),
                                         self.bounds).view_as(rows.x0)
