"""FAB, the fast adaptive boundary attack (Croce and Hein 2020, "Minimally distorted adversarial examples with a
fast adaptive boundary attack"), under L-inf, L2 and L1; and FAB-T, AutoAttack's targeted version.

Each step linearises the boundaries between the true class and the others at the current point ``x_k`` and
takes the closest hyperplane (under the norm: :mod:`alva.attacks.boundaries`). Both ``x_k`` and the clean point
``x_0`` are projected onto it inside the box, giving the steps ``d_k`` and ``d_0``; the next point is the biased
combination

    x_{k+1} = clip((1 - a)(x_k + eta d_k) + a (x_0 + eta d_0)),   a = min(|d_k| / (|d_k| + |d_0|), alpha_max)

which keeps the iterate near the clean point. Where ``x_{k+1}`` is adversarial it is kept if it is the smallest
so far, and the walk goes back towards ``x_0``: ``x_{k+1} = x_0 + beta (x_{k+1} - x_0)``. A restart starts at a
random point of the ball of radius ``min(best distance, eps) / 2`` (the first at ``x_0`` itself); at the end
a few steps of a regula-falsi search on the segment from ``x_0`` to each sample's best point bring it closer to
the boundary (the final search of the paper).
"""

from __future__ import annotations

import torch

from alva.attacks.boundaries import (
    BoundaryRows,
    boundary_rows,
    closest_hyperplane,
    hyperplane_distance,
    linearise,
    other_classes,
    project_onto_hyperplane,
)
from alva.attacks.deepfool import ranked_others
from alva.attacks.engine import Rows, Run
from alva.attacks.errors import AttackInputError, finite, in_interval, positive_int
from alva.attacks.losses import ClassLoss, margin
from alva.attacks.minimum_norm import MinimumNormAttack, MinimumNormResult
from alva.attacks.norms import Norm, get_norm, per_sample

__all__ = ["FAB", "FABTargeted"]


class FAB(MinimumNormAttack):
    """FAB: the smallest adversarial perturbation under L-inf, L2 or L1, with no step size to tune.

    Args:
        model: a classifier returning logits.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        eps: None (pure minimum norm), or a radius: success then needs the distance to be at most eps (as
            AutoAttack counts FAB), and it bounds the random starts.
        steps: steps per restart (100 in AutoAttack).
        restarts: runs per sample; the first starts at the clean point, the others at random points.
        alpha_max: the largest weight of the step from the clean point (0.1 in the paper).
        eta: the overshoot of each projection (1.05).
        beta: the pull back towards the clean point after an adversarial iterate (0.9).
        search_steps: steps of the final search on the segment to each best point (3).

    ``target`` (a rule or tensor: success is the target; the boundaries linearised are those between the target
    and the other classes, and the step goes onto the one of the class that beats the target by most),
    ``early_stop`` (stop a sample at its first success, with eps: within eps), ``bounds`` and ``seed`` are those
    of every attack. Queries: per step one forward pass and ``k - 1`` backward passes (``k`` classes) and one
    forward pass at the new point; ``search_steps`` forward passes at the end.
    """

    def __init__(self, model: torch.nn.Module, norm: str | Norm = "linf", eps: float | None = None, steps: int = 100,
                 restarts: int = 1, alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, *,
                 search_steps: int = 3, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError(f"{type(self).__name__} needs a classifier with class labels")
        self.norm = get_norm(norm)
        if self.norm.name not in ("linf", "l2", "l1"):
            raise AttackInputError(f"FAB works under linf, l2 or l1, got {self.norm.name!r}")
        self.set_eps(eps)
        self.steps = positive_int("steps", steps)
        self.restarts = positive_int("restarts", restarts)
        self.alpha_max = in_interval("alpha_max", alpha_max, "[0, 1]")
        self.eta = finite("eta", eta, 1.0)
        self.beta = in_interval("beta", beta, "[0, 1)")
        self.search_steps = int(finite("search_steps", search_steps))

    def run(self, x, y, target, clean_logits, generator) -> MinimumNormResult:
        run = Run(self, x, y, target, clean_logits, generator, self.rule)
        self.attack_all(run)
        self.final_search(run)
        return self.finish(run)

    def attack_all(self, run: Run) -> None:
        """The searches of a run: ``restarts`` of them."""
        self.repeat(run, self.restarts)

    # -- one search ------------------------------------------------------------------------------------------

    def search(self, run: Run, index: torch.Tensor | None, restart: int, classes: torch.Tensor | None = None,
               stream: int = 0) -> None:
        """``steps`` steps from a start on the rows ``index`` (None: all) that the model classifies correctly;
        the hyperplanes are those of ``classes`` (``n x k`` for the batch; default: every other class, or the
        target)."""
        rows = self.attackable(run, index)
        if rows.n == 0:
            return
        if classes is None:
            classes = other_classes(run.y if run.target is None else run.target, run.clean_logits.shape[1])
        rows.classes = classes if rows.rows is None else classes[rows.rows]
        rows.stream = (stream, restart)
        rows.x = rows.x0 if restart == 0 else self.random_start(run, rows)
        for _ in range(self.steps):
            _, f, w = linearise(lambda z: self.predict(z, rows.y), rows.x, self.reference(rows), rows.classes)
            with torch.no_grad():
                x = self.step(rows, f, w)
                logits = self.predict(x, rows.y)
            run.count_queries(rows, 2)
            run.count_steps(rows)
            success = self.offer_points(run, rows, x, logits)
            across = self.is_success(x, logits, rows.y, rows.target)
            rows.x = torch.where(per_sample(across, x), rows.x0 + self.beta * (x - rows.x0), x)
            if self.early_stop and success.any():
                rows.keep(~success)
                if rows.n == 0:
                    return

    def attackable(self, run: Run, index: torch.Tensor | None) -> BoundaryRows:
        """The rows of ``index`` (None: all) that the model classifies correctly (the others are done)."""
        correct = ~self.is_success(run.x, run.clean_logits, run.y, run.target)
        if index is not None:
            correct = torch.zeros_like(correct).index_fill_(0, index, True) & correct
        return boundary_rows(run.rows(None if correct.all() else correct.nonzero().squeeze(1), rows_type=BoundaryRows))

    def random_start(self, run: Run, rows: BoundaryRows) -> torch.Tensor:
        """A random point in the ball of radius ``min(best distance, eps) / 2`` around each clean point (where
        neither is known: the distance to the closest linearised boundary at the clean point)."""
        index = torch.arange(len(run), device=run.x.device) if rows.rows is None else rows.rows
        best = torch.where(run.best_success[index], -run.best_score[index], float("inf"))
        radius = best.clamp_max(float("inf") if self.eps is None else self.eps)
        unknown = torch.isinf(radius)
        if unknown.any():
            _, f, w = linearise(lambda z: self.predict(z, rows.y[unknown]), rows.x0[unknown],
                                self.reference(rows)[unknown], rows.classes[unknown])
            run.count_queries(rows)
            radius[unknown] = hyperplane_distance(self.norm, f, w).amin(dim=1)
        noise = self.norm.random_in_ball(rows.x0, 1.0, run.uniform(rows, rows.stream))
        return (rows.x0 + noise * per_sample(radius / 2, noise)).clamp(*self.bounds)

    def step(self, rows: BoundaryRows, f: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """The biased step from ``rows.x`` towards the closest linearised boundary (``f``, ``w``: ``n x k``)."""
        f_near, w_near = closest_hyperplane(self.norm, f, w, strongest=rows.target is not None)
        x, x0 = rows.x, rows.x0
        # The hyperplane f + <w, z - x> = 0, reached from x by <w, d> = -f and from x0 by <w, d> = -f - <w, x0 - x>.
        c0 = -f_near - (w_near * (x0 - x)).flatten(1).sum(dim=1)
        d = project_onto_hyperplane(self.norm, torch.cat([x, x0]), torch.cat([w_near, w_near]),
                                    torch.cat([-f_near, c0]), self.bounds)
        d_x, d_0 = d[:len(x)], d[len(x):]
        size_x, size_0 = self.norm.measure(d_x).clamp_min(1e-8), self.norm.measure(d_0).clamp_min(1e-8)
        alpha = per_sample((size_x / (size_x + size_0)).clamp(0, self.alpha_max), x)
        return ((1 - alpha) * (x + self.eta * d_x) + alpha * (x0 + self.eta * d_0)).clamp(*self.bounds)

    # -- the final search -------------------------------------------------------------------------------------

    def final_search(self, run: Run) -> None:
        """Regula falsi on the segment from each clean point to its best adversarial point, on the margin of the
        winning class: ``search_steps`` forward passes, each keeping the side of the segment that holds the
        boundary; the adversarial end is offered (it is never farther than the best point)."""
        done = self.is_success(run.x, run.clean_logits, run.y, run.target)
        index = (run.best_success & ~done).nonzero().squeeze(1)
        if self.search_steps == 0 or len(index) == 0:
            return
        rows = run.rows(index)
        inner, outer = rows.x0, run.best_x[index]
        h_in, h_out = self.margin(run.clean_logits[index], rows), self.margin(run.best_logits[index], rows)
        for _ in range(self.search_steps):
            t = (h_in / (h_in - h_out).clamp_max(-1e-12)).clamp(0, 1)
            mid = inner + per_sample(t, inner) * (outer - inner)
            with torch.no_grad():
                logits = self.predict(mid, rows.y)
            run.count_queries(rows)
            self.offer_points(run, rows, mid, logits)
            h_mid = self.margin(logits, rows)
            across = self.is_success(mid, logits, rows.y, rows.target)
            outer = torch.where(per_sample(across, mid), mid, outer)
            inner = torch.where(per_sample(across, mid), inner, mid)
            h_out, h_in = torch.where(across, h_mid, h_out), torch.where(across, h_in, h_mid)

    @staticmethod
    def reference(rows: Rows) -> torch.Tensor:
        """The class whose boundaries are linearised: the true one, or the target of a targeted attack."""
        return rows.y if rows.target is None else rows.target

    def margin(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """The attack's margin, positive exactly where it succeeds."""
        if rows.target is None:
            return margin(logits, rows.y, False)
        return margin(logits, rows.target, True)


class FABTargeted(FAB):
    """FAB-T of AutoAttack: FAB runs against the hyperplane of one target class at a time, the
    ``n_target_classes`` most likely classes other than the true one (9 in AutoAttack standard), ``restarts``
    runs each; success is misclassification (any wrong class) and each sample keeps its smallest adversarial
    point over all the runs. With ``early_stop`` a run only works on the samples not yet successful (with eps:
    not yet broken within eps, as AutoAttack runs it).

    Args:
        model: a classifier returning logits.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        eps: None, or the radius within which success counts.
        steps: steps per target class and restart.
        restarts: runs per target class.
        n_target_classes: how many of the most likely other classes to target.

    The other settings are those of :class:`FAB`; ``extras["target_class"]`` is, per sample, the target of
    the run that found its returned point (-1 where none did).
    """

    def __init__(self, model: torch.nn.Module, norm: str | Norm = "linf", eps: float | None = None, steps: int = 100,
                 restarts: int = 1, n_target_classes: int = 9, **kwargs) -> None:
        if kwargs.get("target") is not None:
            raise AttackInputError("FABTargeted picks its own targets (the most likely other classes); for a given "
                                   "target use FAB(..., target=...)")
        super().__init__(model, norm, eps, steps, restarts, **kwargs)
        self.n_target_classes = positive_int("n_target_classes", n_target_classes)

    def run(self, x, y, target, clean_logits, generator) -> MinimumNormResult:
        if target is not None:
            raise AttackInputError("FABTargeted picks its own targets; call it without target")
        return super().run(x, y, target, clean_logits, generator)

    def attack_all(self, run: Run) -> None:
        ranked = ranked_others(run.clean_logits, run.y)
        run.extras["target_class"] = torch.full((len(run),), -1, dtype=torch.long, device=run.x.device)
        for t in range(min(self.n_target_classes, ranked.shape[1])):
            before = run.best_x.clone()
            for restart in range(self.restarts):
                index = run.open_rows(self.early_stop)
                if index is not None and len(index) == 0:
                    return
                self.search(run, index, restart, classes=ranked[:, t:t + 1], stream=1 + t)
            moved = (run.best_x != before).flatten(1).any(dim=1)
            run.extras["target_class"][moved] = ranked[moved, t]

    def finish(self, run: Run) -> MinimumNormResult:
        result = super().finish(run)
        found = result.success & (result.distances > 0)
        result.extras["target_class"] = torch.where(found, result.extras["target_class"], -1)
        return result

