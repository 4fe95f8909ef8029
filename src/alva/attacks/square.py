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
and 8000 of 10000, rescaled to the budget).

Queries are counted per sample and include the clean forward pass: a sample gets at most ``n_queries``
model evaluations, and with early stop (the default) none after the query that broke it. Random numbers
are drawn per sample from a counter-based hash of the seed, the sample's pixels and the step, so a sample's
search does not depend on the batch it is in.
"""

from __future__ import annotations

import math

import torch

from alva.attacks.apgd import Best, KeyedRandom
from alva.attacks.base import Attack, AttackInputError, AttackResult, positive_int
from alva.attacks.norms import L2, Linf, Norm, get_norm

__all__ = ["Square", "square_p"]

_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # of 10000 steps (Andriushchenko et al., App. B)


def square_p(p_init: float, step: int, n_queries: int) -> float:
    """The fraction of pixels changed at ``step`` of a search with a budget of ``n_queries``."""
    scaled = int(step / max(n_queries, 1) * 10000)
    return p_init / 2 ** sum(scaled > t for t in _HALVINGS)


def _pyramid(a: int, b: int, device, dtype) -> torch.Tensor:
    """The paper's centred bump on an a x b window: at Chebyshev distance d from the centre,
    ``sum_{j=d+1}^{n+1} 1 / j^2`` with ``n = a // 2`` (largest in the centre)."""
    n = a // 2
    r = (torch.arange(a, device=device) - a // 2).abs()
    c = (torch.arange(b, device=device) - b // 2).abs()
    d = torch.maximum(r[:, None], c[None, :]).clamp_max(n)
    tail = torch.tensor([sum(1.0 / j**2 for j in range(k + 1, n + 2)) for k in range(n + 1)], device=device,
                        dtype=dtype)
    return tail[d]


def _split_pyramid(s: int, device, dtype) -> torch.Tensor:
    """Two opposite bumps side by side on an s x s window (the L2 update's pattern)."""
    left = s // 2
    parts = [] if left == 0 else [_pyramid(s, left, device, dtype)]
    parts.append(-_pyramid(s, s - left, device, dtype))
    return torch.cat(parts, dim=1)


def _window(top: torch.Tensor, left: torch.Tensor, s: int, h: int, w: int) -> torch.Tensor:
    """Per-sample boolean masks (n x 1 x h x w) of the s x s squares with corners (top, left)."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows[None, :] >= top[:, None]) & (rows[None, :] < top[:, None] + s)
    in_cols = (cols[None, :] >= left[:, None]) & (cols[None, :] < left[:, None] + s)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _corner(u: torch.Tensor, size: int, s: int) -> torch.Tensor:
    return (u * (size - s + 1)).long().clamp_(0, size - s)


class Square(Attack):
    """Score-based random search; uses the model's outputs only.

    Args:
        eps: radius of the ball (>= 0) in the units of ``norm``.
        n_queries: the per-sample budget of model evaluations, the clean one included (AutoAttack: 5000).
        norm: ``"linf"`` or ``"l2"``.
        p_init: the initial fraction of pixels changed per step (AutoAttack: 0.8).
        loss: the objective to raise; default ``"margin"`` (best other logit minus the true one, positive at
            success); ``"ce"`` or any loss of :class:`~alva.attacks.base.Attack`.
        early_stop: stop querying a sample once it succeeds (default True here).
        target, bounds, seed: as for every attack.

    ``steps`` counts the random-search steps per sample (one query each, after the clean query and the
    query of the starting point).
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, n_queries: int = 5000, *,
                 norm: str | Norm = "linf", p_init: float = 0.8, loss="margin", early_stop: bool = True,
                 **kwargs) -> None:
        super().__init__(model, loss=loss, early_stop=early_stop, **kwargs)
        if not 0 <= eps < float("inf"):
            raise AttackInputError(f"eps must be >= 0 and finite, got {eps}")
        if not 0 < p_init <= 1:
            raise AttackInputError(f"p_init must be in (0, 1], got {p_init}")
        self.eps = float(eps)
        self.n_queries = positive_int("n_queries", n_queries)
        self.norm = get_norm(norm)
        if not isinstance(self.norm, (Linf, L2)):
            raise AttackInputError(f"Square supports the linf and l2 norms, got {self.norm!r}")
        self.p_init = float(p_init)

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        n, shape = len(x), x.shape
        images = x.reshape(n, 1, 1, -1) if x.ndim == 2 else x.reshape(n, -1, *x.shape[-2:])
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        steps = torch.zeros(n, dtype=torch.long, device=x.device)
        best = Best(x.clone(), clean_logits.clone(), self.loss(clean_logits, y, target),
                    self.loss.success(clean_logits, y, target))
        if self.n_queries < 2 or self.eps == 0:
            return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, target)
        rng = KeyedRandom(x, generator)
        rows = (~best.success).nonzero().squeeze(1) if self.early_stop else torch.arange(n, device=x.device)
        if len(rows) == 0:
            return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, target)

        def evaluate(rows, cand):
            with torch.no_grad():
                logits = self.model(cand.reshape(len(rows), *shape[1:]))
            queries[rows] += 1
            lab, tgt = y[rows], None if target is None else target[rows]
            return logits, self.loss(logits, lab, tgt), self.loss.success(logits, lab, tgt)

        x0 = images[rows]
        cur = self._start(x0, rows, rng)
        logits, obj, success = evaluate(rows, cur)
        best.update(rows, cur.reshape(len(rows), *shape[1:]), logits, obj, success)
        for step in range(self.n_queries - 2):
            if self.early_stop and success.any():
                keep = ~success
                rows, x0, cur, obj, success = rows[keep], x0[keep], cur[keep], obj[keep], success[keep]
            if len(rows) == 0:
                break
            cand = self._propose(x0, cur, rows, rng, step)
            logits, new_obj, new_success = evaluate(rows, cand)
            steps[rows] += 1
            accept = (new_success & ~success) | ((new_success == success) & (new_obj > obj))
            if accept.any():
                cur = torch.where(accept[:, None, None, None], cand, cur)
                obj = torch.where(accept, new_obj, obj)
                success = torch.where(accept, new_success, success)
                local = accept.nonzero().squeeze(1)
                best.update(rows[local], cand[local].reshape(len(local), *shape[1:]), logits[local],
                            new_obj[local], new_success[local])
        return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, target)

    # -- starting points and steps ------------------------------------------------------------------------

    def _side(self, step: int, h: int, w: int) -> int:
        p = square_p(self.p_init, step, self.n_queries)
        return int(min(max(round(math.sqrt(p * h * w)), 1), max(min(h, w) - 1, 1)))

    def _start(self, x0: torch.Tensor, rows: torch.Tensor, rng: KeyedRandom) -> torch.Tensor:
        lo, hi = self.bounds
        n, c, h, w = x0.shape
        if isinstance(self.norm, Linf):
            u = rng.uniform(rows, (0,), c * w).view(n, c, 1, w)
            sign = torch.where(u < 0.5, -1.0, 1.0).to(x0.dtype)
            return (x0 + self.eps * sign).clamp_(lo, hi)
        tile = max(min(h, w) // 5, 1)
        th, tw = -(-h // tile), -(-w // tile)
        u = rng.uniform(rows, (0,), c * th * tw).view(n, c, th, tw)
        sign = torch.where(u < 0.5, -1.0, 1.0).to(x0.dtype)
        signs = sign.repeat_interleave(tile, 2).repeat_interleave(tile, 3)[:, :, :h, :w]
        bumps = _pyramid(tile, tile, x0.device, x0.dtype).repeat(th, tw)[:h, :w]
        delta = signs * bumps
        delta = delta * (self.eps / delta.reshape(n, -1).norm(dim=1).clamp_min(1e-12)).view(n, 1, 1, 1)
        return (x0 + delta).clamp_(lo, hi)

    def _propose(self, x0: torch.Tensor, cur: torch.Tensor, rows: torch.Tensor, rng: KeyedRandom, step: int
                 ) -> torch.Tensor:
        lo, hi = self.bounds
        n, c, h, w = x0.shape
        s = self._side(step, h, w)
        if isinstance(self.norm, Linf):
            u = rng.uniform(rows, (1, step), 2 + c)
            mask = _window(_corner(u[:, 0], h, s), _corner(u[:, 1], w, s), s, h, w)
            sign = torch.where(u[:, 2:] < 0.5, -1.0, 1.0).to(x0.dtype).view(n, c, 1, 1)
            cand = torch.where(mask, (x0 + self.eps * sign).clamp(lo, hi), cur)
            # A step that changes nothing would waste a query: there, use the opposite signs.
            same = ~((cand != cur) & mask).reshape(n, -1).any(dim=1)
            if same.any():
                flip = mask & same.view(n, 1, 1, 1)
                cand = torch.where(flip, (x0 - self.eps * sign).clamp(lo, hi), cand)
            return cand
        u = rng.uniform(rows, (1, step), 5 + c)
        top1, left1 = _corner(u[:, 0], h, s), _corner(u[:, 1], w, s)
        first = _window(top1, left1, s, h, w)
        both = first | _window(_corner(u[:, 2], h, s), _corner(u[:, 3], w, s), s, h, w)
        nu = cur - x0
        unused = (self.eps**2 - nu.reshape(n, -1).pow(2).sum(dim=1)).clamp_min(0)
        mass = (nu.pow(2) * both).sum(dim=(2, 3)).add(unused[:, None] / c).sqrt()  # n x c
        # The pattern on the first square, transposed for about half the samples.
        pattern = _split_pyramid(s, x0.device, x0.dtype)
        patterns = torch.stack([pattern, pattern.T])
        r = (torch.arange(h, device=x0.device)[None, :] - top1[:, None]).clamp(0, s - 1)
        q = (torch.arange(w, device=x0.device)[None, :] - left1[:, None]).clamp(0, s - 1)
        which = (u[:, 4] < 0.5).long()
        placed = patterns[which[:, None, None], r[:, :, None], q[:, None, :]][:, None] * first
        placed = placed / placed.reshape(n, -1).norm(dim=1).clamp_min(1e-12).view(n, 1, 1, 1)
        sign = torch.where(u[:, 5:] < 0.5, -1.0, 1.0).to(x0.dtype).view(n, c, 1, 1)
        old = nu * first
        old = old / old.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        direction = (sign * placed + old) * first
        direction = direction / direction.pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(1e-12)
        new = torch.where(both, direction * mass[:, :, None, None], nu)
        new = self.norm.project(new, self.eps)  # only float rounding can take it outside
        return (x0 + new).clamp_(lo, hi)
