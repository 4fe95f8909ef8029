"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
Attacks") under L-inf or L2, with random start, restarts and per-sample early stop."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alva.attacks.base import Attack, AttackInputError, AttackResult, positive_int
from alva.attacks.norms import Norm, get_norm


class PGD(Attack):
    """Iterated gradient ascent on a loss, projected onto the eps ball around x and the pixel bounds.

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.).
        steps: gradient steps per restart (>= 1).
        norm: ``"linf"`` or ``"l2"``.
        random_start: start each restart uniformly inside the ball.
        restarts: independent runs; each sample keeps its worst case (a success, else the highest loss).

    The result for a sample is the last iterate where that succeeds (the textbook PGD point), else the
    first successful iterate, else the iterate of highest loss.
        loss, target, early_stop, bounds, seed: as for every :class:`~alva.attacks.base.Attack`; the loss
            ``"ce"`` (cross-entropy, default) or ``"margin"`` (Carlini-Wagner) for class labels.

    Every iterate is checked for success with the logits its gradient step already computed, so
    keeping the best iterate costs no extra forward pass.
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 40,
                 *, norm: str | Norm = "linf", random_start: bool = True, restarts: int = 1, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not 0 <= eps < float("inf"):
            raise AttackInputError(f"eps must be >= 0 and finite, got {eps}")
        steps, restarts = positive_int("steps", steps), positive_int("restarts", restarts)
        if alpha is not None and not 0 < alpha < float("inf"):
            raise AttackInputError(f"alpha must be > 0 and finite, got {alpha}")
        self.eps = float(eps)
        self.steps = int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps
        self.norm = get_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = int(restarts)

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        n = len(x)
        best = _Best(x.clone(), clean_logits.clone(), self.loss(clean_logits, y, target),
                     self.loss.success(clean_logits, y, target))
        steps = torch.zeros(n, dtype=torch.long, device=x.device)
        queries = torch.ones(n, dtype=torch.long, device=x.device)
        for _ in range(self.restarts):
            # Rows still attacked; None stands for the whole batch and spares the indexing.
            idx = (~best.success).nonzero().squeeze(1) if self.early_stop else None
            if idx is not None and len(idx) == 0:
                break
            self._restart(x, y, target, idx, best, steps, queries, generator)
        return AttackResult(best.x, best.success.clone(), steps, queries, best.logits, clean_logits, target)

    def _restart(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, idx: torch.Tensor | None,
                 best: _Best, steps: torch.Tensor, queries: torch.Tensor,
                 generator: torch.Generator | None) -> None:
        """One run of ``self.steps`` steps on rows ``idx`` (all if None), updating ``best`` and the counts."""
        lo, hi = self.bounds
        x0, lab, tgt = (x, y, target) if idx is None else (x[idx], y[idx], _rows(target, idx))
        x_adv = x0
        if self.random_start:
            x_adv = (x0 + self.norm.random_in_ball(x0, self.eps, generator)).clamp_(lo, hi)
        for _ in range(self.steps):
            x_adv = x_adv.detach().requires_grad_(True)
            logits = self.model(x_adv)
            loss = self.loss(logits, lab, tgt)
            (grad,) = torch.autograd.grad(loss.sum(), x_adv)
            _count(queries, idx)
            with torch.no_grad():
                x_adv, logits, loss = x_adv.detach(), logits.detach(), loss.detach()
                success = self.loss.success(logits, lab, tgt)
                best.update(idx, x_adv, logits, loss, success)
                if self.early_stop and success.any():
                    keep = ~success
                    idx, x0, lab, x_adv, grad = idx[keep], x0[keep], lab[keep], x_adv[keep], grad[keep]
                    tgt = _rows(tgt, keep)
                    if len(idx) == 0:
                        return
                _count(steps, idx)
                x_adv = self._step(x_adv, grad, x0)
        with torch.no_grad():
            logits = self.model(x_adv)
            _count(queries, idx)
            loss = self.loss(logits, lab, tgt)
            # A successful last iterate wins over an earlier success: without early stop the result is then
            # the textbook PGD (or FGSM) point, and an earlier iterate is kept only where the last one fails.
            best.update(idx, x_adv, logits, loss, self.loss.success(logits, lab, tgt), final=True)

    def _step(self, x_adv: torch.Tensor, grad: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """``x_adv`` plus an ascent step, projected onto the eps ball around ``x0`` and the bounds.

        Overwrites ``grad``: the norm may compute the step in its memory, so that a step allocates less.
        """
        lo, hi = self.bounds
        return self.norm.ascend(x_adv, grad, x0, self.alpha, self.eps).clamp_(lo, hi)


@dataclass
class _Best:
    """The best iterate of each sample so far: a success, else the one with the highest loss."""

    x: torch.Tensor
    logits: torch.Tensor
    loss: torch.Tensor
    success: torch.Tensor

    def update(self, idx: torch.Tensor | None, x_cand: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor,
               success: torch.Tensor, final: bool = False) -> None:
        """Keep the candidates (for rows ``idx``; all rows when None) that beat the best so far;
        a ``final`` candidate that succeeds replaces an earlier success too."""
        old_success = self.success if idx is None else self.success[idx]
        old_loss = self.loss if idx is None else self.loss[idx]
        better = ~old_success & (success | (loss > old_loss))
        if final:
            better |= success
        local = better.nonzero().squeeze(1)
        if len(local) == 0:
            return
        rows = local if idx is None else idx[local]
        self.x[rows] = x_cand[local]
        self.logits[rows] = logits[local]
        self.loss[rows] = loss[local]
        self.success[rows] = success[local]


def _rows(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[rows]


def _count(counter: torch.Tensor, idx: torch.Tensor | None) -> None:
    """Add one to ``counter`` at rows ``idx`` (all rows when None)."""
    if idx is None:
        counter += 1
    else:
        counter[idx] += 1


class FGSM(PGD):
    """Fast gradient sign method: one step of size eps from x (Goodfellow, Shlens and Szegedy 2015,
    "Explaining and Harnessing Adversarial Examples"); under L2 the fast gradient method."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, *, norm: str | Norm = "linf", **kwargs) -> None:
        super().__init__(model, eps=eps, alpha=max(float(eps), 1e-12), steps=1, norm=norm, random_start=False,
                         restarts=1, **kwargs)
