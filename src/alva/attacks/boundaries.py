"""Linearised decision boundaries: the hyperplanes that approximate a classifier's boundaries around a point,
their distances under each norm, and the smallest steps onto them, with and without the pixel box.

At a point ``x`` the boundary between the true class ``y`` and a class ``c`` is approximated by the hyperplane
``f(x) + <w, z - x> = 0`` with ``f = logit_c - logit_y`` and ``w`` its gradient. The distance of ``x`` to it
under a norm is ``|f| / ||w||_*`` (``*``: the dual norm), the basis of DeepFool (Moosavi-Dezfooli et al. 2016)
and FAB (Croce and Hein 2020). FAB also needs the closest point of the hyperplane inside the box, for which
:func:`project_onto_hyperplane` solves ``min ||d|| s.t. <w, d> = c, lo <= p + d <= hi`` exactly under L-inf, L2
and L1 (a sort and a cumulative sum each, as in Section 3.1 of the FAB paper).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alva.attacks.engine import Rows
from alva.attacks.errors import AttackInputError
from alva.attacks.norms import Norm, get_norm

__all__ = ["DUAL", "BoundaryRows", "boundary_rows", "closest_hyperplane", "hyperplane_distance", "linearise",
           "other_classes", "project_onto_hyperplane"]

DUAL = {"linf": "l1", "l2": "l2", "l1": "linf"}
"""The dual of each norm that has hyperplane geometry: the norm that measures a gradient."""


class BoundaryRows(Rows):
    """The per-row state of an attack on linearised boundaries: the classes whose boundaries with the true class
    it linearises (``n x k``)."""

    classes: torch.Tensor


def boundary_rows(rows: Rows) -> BoundaryRows:
    """``rows`` as :class:`BoundaryRows` (what ``run.rows(..., rows_type=BoundaryRows)`` made)."""
    if not isinstance(rows, BoundaryRows):
        raise TypeError(f"expected BoundaryRows, got {type(rows).__name__}")
    return rows


def _dual(norm: Norm) -> Norm:
    if norm.name not in DUAL:
        raise AttackInputError(f"no hyperplane geometry for the norm {norm.name!r}; choose one of {sorted(DUAL)}")
    return get_norm(DUAL[norm.name])


def other_classes(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Every class but ``y`` for each sample (``n x (num_classes - 1)``, in increasing order)."""
    every = torch.arange(num_classes, device=y.device).expand(len(y), num_classes)
    return every[every != y[:, None]].view(len(y), num_classes - 1)


def linearise(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
              classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The hyperplanes at ``x`` between ``y`` and each class of ``classes`` (``n x k``): the logits at ``x``,
    ``f = logit_c - logit_y`` (``n x k``) and the gradients of ``f`` (``n x k x ...``), from one forward pass
    and ``k`` backward passes."""
    x = x.detach().requires_grad_(True)
    logits = predict(x)
    diff = logits.gather(1, classes) - logits.gather(1, y[:, None])
    grads = [torch.autograd.grad(diff[:, j].sum(), x, retain_graph=j < classes.shape[1] - 1)[0]
             for j in range(classes.shape[1])]
    return logits.detach(), diff.detach(), torch.stack(grads, dim=1)


def hyperplane_distance(norm: str | Norm, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The distance ``|f| / ||w||_*`` of the point to each hyperplane (``f``: ``n x k``, ``w``: ``n x k x ...``)."""
    dual = _dual(get_norm(norm))
    return f.abs() / dual.measure(w.flatten(0, 1)).view_as(f).clamp_min(1e-12)


def closest_hyperplane(norm: str | Norm, f: torch.Tensor, w: torch.Tensor, strongest: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample, the value ``f`` and gradient ``w`` of its closest hyperplane under ``norm``; with
    ``strongest``, of the hyperplane of largest ``f`` (the class that beats the reference class by most: the
    boundary a targeted attack must cross, the reference being the target)."""
    j = f.argmax(dim=1) if strongest else hyperplane_distance(norm, f, w).argmin(dim=1)
    rows = torch.arange(len(f), device=f.device)
    return f[rows, j], w[rows, j]


def _water_level(q: torch.Tensor, u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per row, the ``r >= 0`` with ``g(r) = sum_i q_i min(r, u_i) = c`` (``q, u >= 0``; ``inf`` where even
    ``r = inf`` falls short).

    ``g`` is concave and piecewise linear with kinks at the ``u_i``: Newton's method from ``r = c / sum q``
    (below the root) solves the linear piece through the current ``r``, ``sum_{u_i <= r} q_i u_i + r sum_{u_i > r}
    q_i = c``; its root is never past the true one, and the iteration stops, exactly, when no kink lies between
    two iterates (a few iterations, where sorting the kinks would cost a sort of every row).
    """
    qu = q * u  # the height an entry adds once r passes its kink (while r < u_i it adds the slope q_i)
    r = c / q.sum(dim=1).clamp_min(1e-30)
    for _ in range(u.shape[1] + 1):
        above = (u > r[:, None]).to(q.dtype)
        slope, height = (above * q).sum(dim=1), ((1 - above) * qu).sum(dim=1)
        reached = torch.where(height >= c, r, torch.full_like(r, float("inf")))  # no slope left: the top of g
        following = torch.where(slope > 0, (c - height) / slope.clamp_min(1e-30), reached)
        if torch.equal(following, r):
            break
        r = following
    return r.clamp_min(0)


def _knapsack(a: torch.Tensor, m: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Per row, the ``t`` with ``0 <= t <= m`` and ``sum a t = c`` of smallest ``sum t``: fill the coordinates
    of largest ``a`` first (all of them where ``c`` cannot be reached)."""
    a, order = a.sort(dim=1, descending=True)
    m = m.gather(1, order)
    filled = (a * m).cumsum(dim=1)
    before = torch.cat([torch.zeros_like(filled[:, :1]), filled[:, :-1]], dim=1)
    rest = ((c[:, None] - before) / a.clamp_min(1e-30)).clamp_min(0)
    t = torch.minimum(m, rest) * (a > 0)
    return torch.zeros_like(t).scatter_(1, order, t)


def project_onto_hyperplane(norm: str | Norm, p: torch.Tensor, w: torch.Tensor, c: torch.Tensor,
                            bounds: tuple[float, float]) -> torch.Tensor:
    """The smallest ``d`` under ``norm`` with ``<w, d> = c`` and ``p + d`` inside ``bounds``, per sample (where
    the box does not reach the hyperplane: the ``d`` that gets closest, at the box's corner).

    With ``a = |w|`` and ``m`` the room the box leaves in the direction that moves ``<w, d>`` towards ``c``:
    under L-inf ``t_i = min(r, m_i)``, under L2 ``t_i = a_i min(r, m_i / a_i)`` (both for the level ``r`` of
    :func:`_water_level`), under L1 the coordinates of largest ``a`` are filled first.
    """
    name = get_norm(norm).name
    _dual(get_norm(name))
    flat_w, flat_p = w.flatten(1), p.flatten(1)
    direction = flat_w.sign() * c.sign()[:, None]  # the sign of d_i that moves <w, d> towards c
    lo, hi = bounds
    room = torch.where(direction > 0, hi - flat_p, flat_p - lo).clamp_min(0)
    a = flat_w.abs()
    need = c.abs()
    if name == "linf":
        t = torch.minimum(_water_level(a, torch.where(a > 0, room, 0), need)[:, None], room) * (a > 0)
    elif name == "l2":
        kink = torch.where(a > 0, room / a.clamp_min(1e-30), 0)
        level = _water_level(a * a, kink, need)[:, None]
        t = torch.where(a > 0, torch.minimum(a * level, room), 0)
    else:
        t = _knapsack(a, room, need)
    return (direction * t).view_as(p)
