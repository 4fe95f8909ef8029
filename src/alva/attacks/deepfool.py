"""DeepFool (Moosavi-Dezfooli, Fawzi and Frossard 2016, "DeepFool: a simple and accurate method to fool deep
neural networks"): walk to the closest linearised decision boundary until the class changes.

At each step, for the ``candidates`` most likely classes the boundary with the true class is linearised at the
current point ``x_k`` (:mod:`alva.attacks.boundaries`), and ``x_k`` is moved onto the closest of these hyperplanes
by the smallest step under the norm: ``z = x_k + d``. The next point is ``x + (1 + overshoot)(z - x)``, clipped to
the bounds; a sample stops as soon as it is misclassified (or classified as its target).

The step keeps to the box: ``d`` is the smallest step onto the hyperplane that stays within the bounds (the
projection FAB uses), where the paper and foolbox take the step of the unbounded problem and clip it. On images
with many pixels at a bound (MNIST) the clipped step makes little progress towards the boundary and many points
stay unbroken after 50 steps; the step within the box reaches the hyperplane whenever the box allows it.
"""

from __future__ import annotations

import torch

from alva.attacks.boundaries import (
    BoundaryRows,
    boundary_rows,
    closest_hyperplane,
    linearise,
    other_classes,
    project_onto_hyperplane,
)
from alva.attacks.engine import Rows, Run
from alva.attacks.errors import AttackInputError, finite, positive_int
from alva.attacks.losses import ClassLoss
from alva.attacks.minimum_norm import MinimumNormAttack
from alva.attacks.norms import Norm, get_norm

__all__ = ["DeepFool", "ranked_others"]


def ranked_others(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The classes other than ``y``, the most likely first (by ``logits``)."""
    ranked = logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True, stable=True)
    return ranked[:, :-1]


class DeepFool(MinimumNormAttack):
    """DeepFool under L2 or L-inf: a minimum-norm attack that needs no step size.

    Args:
        model: a classifier returning logits.
        norm: ``"l2"`` or ``"linf"``.
        steps: most steps per sample (50 in foolbox).
        overshoot: the walk goes ``1 + overshoot`` times the summed steps, to land past the boundary (0.02).
        candidates: how many classes are linearised: the true class and the ``candidates - 1`` most likely others
            at the clean point (10; fewer when the model has fewer classes).
        eps: None (pure minimum norm) or a radius: success then also needs the distance to be at most eps.

    ``target``, ``bounds`` and ``seed`` are those of every attack (targeted, the boundaries linearised are
    those between the target and every other class, and the step goes onto the one of the class that beats
    the target by most); a sample always stops at its first success
    (``early_stop`` changes nothing). Queries: one forward and ``candidates - 1`` backward passes per step,
    plus one forward pass at the last point.
    """

    def __init__(self, model: torch.nn.Module, norm: str | Norm = "l2", steps: int = 50, overshoot: float = 0.02, *,
                 candidates: int = 10, eps: float | None = None, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("DeepFool needs a classifier with class labels")
        self.norm = get_norm(norm)
        if self.norm.name not in ("l2", "linf"):
            raise AttackInputError(f"DeepFool works under l2 or linf, got {self.norm.name!r}")
        self.steps = positive_int("steps", steps)
        self.overshoot = finite("overshoot", overshoot)
        self.candidates = positive_int("candidates", candidates)
        if self.candidates < 2:
            raise AttackInputError("candidates must be at least 2: the true class and one other")
        self.set_eps(eps)

    def hyperplane_classes(self, run: Run, rows: Rows) -> torch.Tensor:
        """The classes whose boundaries with the true class are linearised, per row."""
        if rows.target is not None:
            return other_classes(rows.target, run.clean_logits.shape[1])
        logits = run.clean_logits if rows.rows is None else run.clean_logits[rows.rows]
        return ranked_others(logits, rows.y)[:, :self.candidates - 1]

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        rows = boundary_rows(run.rows(run.unbroken_rows() if index is None else index, rows_type=BoundaryRows))
        if rows.n == 0:
            return
        rows.classes = self.hyperplane_classes(run, rows)
        rows.x = rows.x0
        for k in range(self.steps):
            own = rows.y if rows.target is None else rows.target
            logits, f, w = linearise(lambda z: self.predict(z, rows.y), rows.x, own, rows.classes)
            run.count_queries(rows)
            if k > 0:
                going = ~self.arrived(run, rows, logits)
                f, w = f[going], w[going]
                if rows.n == 0:
                    return
            with torch.no_grad():
                f_near, w_near = closest_hyperplane(self.norm, f, w, strongest=rows.target is not None)
                onto = rows.x + project_onto_hyperplane(self.norm, rows.x, w_near, -f_near, self.bounds)
                rows.x = (rows.x0 + (1 + self.overshoot) * (onto - rows.x0)).clamp(*self.bounds)
            run.count_steps(rows)
        with torch.no_grad():
            logits = self.predict(rows.x, rows.y)
        run.count_queries(rows)
        self.arrived(run, rows, logits)

    def arrived(self, run: Run, rows: Rows, logits: torch.Tensor) -> torch.Tensor:
        """Offer the rows' points; drop (and return the mask of) those across the boundary."""
        self.offer_points(run, rows, rows.x, logits)
        across = self.is_success(rows.x, logits, rows.y, rows.target)
        if across.any():
            rows.keep(~across)
        return across
