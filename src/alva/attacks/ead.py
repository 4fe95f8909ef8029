"""Elastic-net attack (Chen, Sharma, Zhang, Yi and Hsieh 2018, "EAD: Elastic-Net Attacks to Deep Neural Networks
via Adversarial Examples").

For a constant ``c`` EAD minimises, over points ``x`` in the pixel bounds,

    c * max(-loss(x), -confidence) + ||x - x0||_2^2 + beta * ||x - x0||_1

where ``loss`` is the Carlini-Wagner margin (positive exactly when the attack succeeds). The smooth part takes a
gradient step with a learning rate decaying as ``lr * (1 - k / steps)^0.5``; the L1 part is handled by the
shrinkage-thresholding operator projected onto the box, with FISTA's momentum on a slack point (Beck and
Teboulle 2009), as the paper. A binary search over ``c`` per sample (``binary_steps`` rounds from
``initial_const``; times ten until a first success) looks for the smallest ``c`` that still succeeds. Of all the
successful iterates of a sample, the decision rule picks the one of smallest L1 distance (``"l1"``) or smallest
elastic-net cost ``beta * L1 + L2^2`` (``"en"``). Each iterate costs a forward and backward pass at the slack
point and a forward pass at the iterate.
"""

from __future__ import annotations

from typing import cast

import torch

from alva.attacks.carlini_wagner import ConstantSearch
from alva.attacks.engine import Rows, Run
from alva.attacks.errors import AttackInputError, finite, positive_int
from alva.attacks.minimum_norm import MinimumNormAttack
from alva.attacks.norms import get_norm

__all__ = ["DECISION_RULES", "EAD", "shrink"]

DECISION_RULES = ("l1", "en")


def shrink(z: torch.Tensor, x0: torch.Tensor, beta: float, bounds: tuple[float, float]) -> torch.Tensor:
    """The shrinkage-thresholding operator of EAD projected onto the box: ``z - beta`` where ``z - x0 > beta``,
    ``z + beta`` where ``z - x0 < -beta`` (each clamped to the bounds), ``x0`` elsewhere."""
    lo, hi = bounds
    diff = z - x0
    up = (z - beta).clamp(max=hi)
    down = (z + beta).clamp(min=lo)
    return torch.where(diff > beta, up, torch.where(diff < -beta, down, x0))


class EADRows(Rows):
    """The per-row state of one round of EAD at fixed constants: the iterate ``x``, the FISTA slack point, each
    row's constant, its place in the search (``slot``) and its cost at the last abort check."""

    slack: torch.Tensor
    const: torch.Tensor
    slot: torch.Tensor
    last_cost: torch.Tensor


class EAD(MinimumNormAttack):
    """The elastic-net attack: sparse perturbations of small L1 distance (the result's ``norm`` is ``"l1"``).

    Args:
        model: a classifier returning logits for images in ``bounds``.
        steps: iterations per binary-search round (>= 1).
        binary_steps: rounds of the binary search over the constant ``c`` (>= 1).
        beta: weight of the L1 term (>= 0), also the shrinkage threshold.
        decision_rule: ``"l1"`` (the successful iterate of smallest L1) or ``"en"`` (of smallest elastic-net cost).
        initial_const: the first constant ``c`` (> 0).
        lr: the first learning rate (> 0).
        confidence: the margin ``kappa`` a success needs (>= 0).
        abort_early: end a round for a sample that has not succeeded in it and whose cost has not decreased over
            a tenth of the steps (a sample that has succeeded goes on shrinking its perturbation).
        **kwargs: ``loss`` (default ``"margin"``), ``target``, ``bounds`` and ``seed`` of every
            :class:`~alva.attacks.base.Attack`.

    Samples misclassified before the attack are not searched (their distance is 0).
    """

    def __init__(self, model: torch.nn.Module, steps: int = 100, binary_steps: int = 9, beta: float = 1e-3,
                 decision_rule: str = "l1", *, initial_const: float = 1e-3, lr: float = 0.01, confidence: float = 0.0,
                 abort_early: bool = True, **kwargs) -> None:
        kwargs.setdefault("loss", "margin")
        super().__init__(model, **kwargs)
        self.norm = get_norm("l1")
        self.steps = positive_int("steps", steps)
        self.binary_steps = positive_int("binary_steps", binary_steps)
        self.beta = finite("beta", beta)
        if decision_rule not in DECISION_RULES:
            raise AttackInputError(f"decision_rule must be one of {DECISION_RULES}, got {decision_rule!r}")
        self.decision_rule = decision_rule
        self.initial_const = finite("initial_const", initial_const, strict=True)
        self.lr = finite("lr", lr, strict=True)
        self.confidence = finite("confidence", confidence)
        self.abort_early = bool(abort_early)

    def is_success(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                   ) -> torch.Tensor:
        success = self.loss.success(logits, y, target)
        if self.confidence > 0:
            success = success & (self.loss(logits, y, target) >= self.confidence)
        return success

    def elastic_net(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample ``beta * ||x - x0||_1 + ||x - x0||_2^2``."""
        delta = (x - x0).reshape(len(x), -1)
        return self.beta * delta.abs().sum(dim=1) + delta.pow(2).sum(dim=1)

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        """The binary search over the constant for the rows of ``index`` not broken at the clean point."""
        index = run.unbroken_rows() if index is None else index[~run.best_success[index]]
        if len(index) == 0:
            return
        constants = ConstantSearch(len(index), self.initial_const, run.x.device)
        for _ in range(self.binary_steps):
            constants.update(self.minimise(run, index, constants.const))

    def minimise(self, run: Run, index: torch.Tensor, const: torch.Tensor) -> torch.Tensor:
        """One round of FISTA at the constants ``const`` for the rows ``index``; returns which succeeded in it."""
        slot = torch.arange(len(index), device=index.device)
        rows = cast(EADRows, run.rows(index, rows_type=EADRows, const=const, slot=slot))
        rows.x = rows.x0.clone()
        rows.slack = rows.x0.clone()
        rows.last_cost = torch.full_like(const, float("inf"))
        succeeded = torch.zeros(len(index), dtype=torch.bool, device=index.device)
        check_every = max(self.steps // 10, 1)
        for k in range(self.steps):
            grad = self.smooth_gradient(run, rows)
            with torch.no_grad():
                x = shrink(rows.slack - self.lr * (1 - k / self.steps) ** 0.5 * grad, rows.x0, self.beta, self.bounds)
                rows.slack = x + k / (k + 3) * (x - rows.x)
                rows.x = x
                logits = self.predict(x, rows.y)
                run.count_queries(rows)
                run.count_steps(rows)
                succeeded[rows.slot] |= self.offer(run, rows, x, logits)
                if self.abort_early and (k + 1) % check_every == 0:
                    cost = self.cost(rows, logits)
                    stuck = (cost > rows.last_cost * 0.999999) & ~succeeded[rows.slot]
                    rows.last_cost = cost
                    rows.keep(~stuck)
                    if rows.n == 0:
                        break
        return succeeded

    def hinge(self, logits: torch.Tensor, rows: Rows) -> torch.Tensor:
        """Carlini and Wagner's ``max(-loss, -confidence)``: zero gain once the margin reaches the confidence."""
        return (-self.loss(logits, rows.y, rows.target)).clamp_min(-self.confidence)

    def smooth_gradient(self, run: Run, rows: EADRows) -> torch.Tensor:
        """The gradient of ``c * hinge + ||x - x0||_2^2`` at the slack points (one forward and backward pass)."""
        slack = rows.slack.detach().requires_grad_(True)
        logits = self.predict(slack, rows.y)
        run.count_queries(rows)
        objective = (rows.const * self.hinge(logits, rows)).sum() + (slack - rows.x0).pow(2).sum()
        (grad,) = torch.autograd.grad(objective, slack)
        return grad

    def cost(self, rows: EADRows, logits: torch.Tensor) -> torch.Tensor:
        """The whole objective at the iterates ``rows.x`` with outputs ``logits``."""
        return rows.const * self.hinge(logits, rows) + self.elastic_net(rows.x, rows.x0)

    def offer(self, run: Run, rows: Rows, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Offer the iterates ``x`` ranked by the decision rule; returns their success."""
        if self.decision_rule == "l1":
            return self.offer_points(run, rows, x, logits)
        success = self.is_success(x, logits, rows.y, rows.target)
        run.offer(rows, x, logits, -self.elastic_net(x, rows.x0), success)
        return success
