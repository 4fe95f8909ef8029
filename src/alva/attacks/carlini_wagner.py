"""The Carlini-Wagner L2 attack (Carlini and Wagner 2017, "Towards Evaluating the Robustness of Neural
Networks"): the smallest L2 perturbation that changes the decision, found by minimising

    ||x' - x||_2^2 + c * f(x'),    f(x') = max(-margin(x'), -confidence)

over ``x' = lo + (hi - lo) * (tanh(w) + 1) / 2`` (the change of variables that keeps ``x'`` inside the bounds
without clipping) with Adam on ``w``, where ``margin`` is the attack loss (by default the margin ``max_{i != y}
Z_i - Z_y``, positive exactly when the sample is misclassified; for a targeted attack ``Z_t - max_{i != t}
Z_i``). A binary search per sample over the constant ``c`` follows each run: where the run found an adversarial
point, ``c`` moves down towards the largest constant known to fail, else up (times 10 until some constant has
succeeded).

Every iterate is offered to the engine, which keeps each sample's closest adversarial point
(:class:`~alva.attacks.minimum_norm.MinimumNormResult`). The attack draws no random numbers: a call repeats
exactly, with or without a seed (the seed only matters for random targets).
"""

from __future__ import annotations

from typing import cast

import torch

from alva.attacks.engine import Rows, Run
from alva.attacks.errors import finite, positive_int
from alva.attacks.minimum_norm_gradient import MinimumNormGradientAttack
from alva.attacks.norms import get_norm, per_sample

__all__ = ["CWRows", "CarliniWagner", "ConstantSearch"]

TANH_SHRINK = 1 - 1e-6
"""Pixels at the bounds map to a finite ``w``: ``atanh`` of at most this (as the reference implementation)."""
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
NO_UPPER = 1e10  # the upper bound of c before any constant has succeeded
SEARCH = "binary_search"  # the key of the ConstantSearch in the run's extras while the searches go on


class ConstantSearch:
    """The per-sample binary search over the constant ``c``: ``const`` is the one to try next, ``found`` where
    the search with it has found an adversarial point so far."""

    def __init__(self, n: int, initial: float, device: torch.device) -> None:
        self.const = torch.full((n,), initial, device=device)
        self.lower = torch.zeros(n, device=device)
        self.upper = torch.full((n,), NO_UPPER, device=device)
        self.found = torch.zeros(n, dtype=torch.bool, device=device)

    def update(self, found: torch.Tensor) -> None:
        """Where the last constant found an adversarial point it is an upper bound, else a lower bound; the next
        constant is the midpoint of the bounds, or ten times the last while no upper bound is known."""
        self.found = torch.zeros_like(found)
        self.upper = torch.where(found, torch.minimum(self.upper, self.const), self.upper)
        self.lower = torch.where(found, self.lower, torch.maximum(self.lower, self.const))
        bounded = self.upper < NO_UPPER / 10
        self.const = torch.where(bounded, (self.lower + self.upper) / 2, self.const * 10)


class CWRows(Rows):
    """The per-row state of one Carlini-Wagner search: the variable ``w``, Adam's moments, the constant, the
    attack loss at the iterate and the objective at the last abort-early check."""

    w: torch.Tensor
    m: torch.Tensor
    v: torch.Tensor
    const: torch.Tensor
    margin: torch.Tensor
    last_objective: torch.Tensor


class CarliniWagner(MinimumNormGradientAttack):
    """Carlini-Wagner L2: Adam in tanh space on ``||delta||^2 + c * f``, with a per-sample binary search over c.

    Args:
        model: a classifier returning logits for images in ``bounds``.
        steps: Adam steps per constant (the paper's ``max_iterations``).
        binary_steps: constants tried per sample (the paper's ``binary_search_steps``).
        initial_const: the first constant ``c``.
        lr: Adam's learning rate on ``w``. The paper's 0.01 suits its 10000 steps; in 100 steps it cannot move
            the pixels at the bounds (most of an MNIST image), whose ``w`` starts near -7.25 or 7.25.
        confidence: the margin ``kappa`` a success needs (0: any misclassification, as the loss's success).
        abort_early: stop a sample's search when its objective has not fallen by 0.01% over a tenth of the steps.
        **kwargs: ``loss`` (default ``"margin"``: the paper's f_6), ``target``, ``bounds``, ``seed`` of every
            :class:`~alva.attacks.base.Attack`.

    The result holds, per sample, the closest adversarial iterate of all searches and its L2 distance;
    ``extras["const"]`` the constant the binary search would try next. The searches are the engine's restarts:
    ``Repeated(attack, n)`` makes the binary search ``n`` times as long.
    """

    rows_type = CWRows

    def __init__(self, model: torch.nn.Module, steps: int = 100, binary_steps: int = 9, initial_const: float = 1e-2,
                 lr: float = 0.1, confidence: float = 0.0, abort_early: bool = True, **kwargs) -> None:
        super().__init__(model, **{"loss": "margin", **kwargs})
        self.norm = get_norm("l2")
        self.steps = positive_int("steps", steps)
        self.binary_steps = positive_int("binary_steps", binary_steps)
        self.initial_const = finite("initial_const", initial_const, strict=True)
        self.lr = finite("lr", lr, strict=True)
        self.confidence = finite("confidence", confidence)
        self.abort_early = bool(abort_early)
        self.restarts = self.binary_steps

    def repeat(self, run: Run, times: int, only_unbroken: bool | None = None) -> None:
        """``times`` searches, each with the next constant of the binary search, on every sample not already
        successful at the clean point (its distance is 0)."""
        constants = ConstantSearch(len(run), self.initial_const, run.x.device)
        run.extras[SEARCH] = constants  # what start and checked read during the searches
        index = run.unbroken_rows()
        for binary_step in range(times):
            if len(index):
                self.search(run, index, binary_step)
            constants.update(constants.found)
        del run.extras[SEARCH]
        run.extras["const"] = constants.const

    def is_success(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                   ) -> torch.Tensor:
        """The loss's success and, with a confidence, a margin of at least that much."""
        success = self.loss.success(logits, y, target)
        if self.confidence > 0:
            success = success & (self.loss(logits, y, target) >= self.confidence)
        return success

    def to_image(self, w: torch.Tensor) -> torch.Tensor:
        lo, hi = self.bounds
        return ((torch.tanh(w) + 1) * ((hi - lo) / 2) + lo).clamp_(lo, hi)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        rows = cast(CWRows, rows)
        lo, hi = self.bounds
        rows.w = torch.atanh(((rows.x0 - lo) / (hi - lo) * 2 - 1) * TANH_SHRINK)
        rows.m, rows.v = torch.zeros_like(rows.w), torch.zeros_like(rows.w)
        const = cast(ConstantSearch, run.extras[SEARCH]).const
        rows.const = const if rows.rows is None else const[rows.rows]
        rows.last_objective = torch.full_like(rows.const, float("inf"))
        return self.to_image(rows.w)

    def objective(self, rows: CWRows, margin: torch.Tensor) -> torch.Tensor:
        """``||x - x0||^2 + c * max(-margin, -confidence)`` per row."""
        return self.distance(rows.x, rows.x0).square() + rows.const * (-margin).clamp_min(-self.confidence)

    def observe(self, rows: Rows, k: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        rows = cast(CWRows, rows)
        rows.margin = loss
        check = max(self.steps // 10, 1)
        if not self.abort_early or k == 0 or k % check:
            return
        objective = self.objective(rows, loss)
        stalled = objective > rows.last_objective * 0.9999
        rows.last_objective = objective
        if stalled.any():
            rows.keep(~stalled)

    def checked(self, run: Run, rows: Rows, k: int, logits: torch.Tensor, success: torch.Tensor) -> None:
        found = cast(ConstantSearch, run.extras[SEARCH]).found
        found[slice(None) if rows.rows is None else rows.rows] |= success

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        """One Adam step on ``w``: the gradient of the objective through the change of variables."""
        rows = cast(CWRows, rows)
        lo, hi = self.bounds
        below = (rows.margin < self.confidence).to(grad.dtype)  # where f still depends on the margin
        grad_x = 2 * (rows.x - rows.x0) - per_sample(rows.const * below, grad) * grad
        grad_w = grad_x * ((hi - lo) / 2) * (1 - torch.tanh(rows.w).square())
        beta1, beta2 = ADAM_BETAS
        rows.m.mul_(beta1).add_(grad_w, alpha=1 - beta1)
        rows.v.mul_(beta2).addcmul_(grad_w, grad_w, value=1 - beta2)
        m_hat = rows.m / (1 - beta1 ** (k + 1))
        v_hat = rows.v / (1 - beta2 ** (k + 1))
        rows.w = rows.w - self.lr * m_hat / (v_hat.sqrt() + ADAM_EPS)
        return self.to_image(rows.w)
