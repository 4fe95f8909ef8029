"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
Attacks") under L-inf or L2, with random start, restarts and per-sample early stop."""

from __future__ import annotations

import torch

from alva.attacks.base import Attack, AttackInputError, AttackResult
from alva.attacks.losses import Objective, get_loss, is_success
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
        loss: ``"ce"`` (cross-entropy), ``"margin"`` (Carlini-Wagner) or a callable
            ``(logits, labels, targeted) -> per-sample loss to maximise``.

    Every iterate is checked for success with the logits its gradient step already computed, so
    keeping the best iterate costs no extra forward pass.
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 40,
                 *, norm: str | Norm = "linf", random_start: bool = True, restarts: int = 1,
                 loss: str | Objective = "ce", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if not eps >= 0:
            raise AttackInputError(f"eps must be >= 0, got {eps}")
        if int(steps) != steps or steps < 1:
            raise AttackInputError(f"steps must be an integer >= 1, got {steps}")
        if int(restarts) != restarts or restarts < 1:
            raise AttackInputError(f"restarts must be an integer >= 1, got {restarts}")
        if alpha is not None and not alpha > 0:
            raise AttackInputError(f"alpha must be > 0, got {alpha}")
        self.eps = float(eps)
        self.steps = int(steps)
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / self.steps
        self.norm = get_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = int(restarts)
        self.loss = get_loss(loss)

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        targeted = target is not None
        labels = target if targeted else y
        n = len(x)
        best_x = x.clone()
        best_logits = clean_logits.clone()
        best_success = is_success(clean_logits, labels, targeted)
        best_loss = self.loss(clean_logits, labels, targeted)
        steps = torch.zeros(n, dtype=torch.long, device=x.device)
        queries = torch.ones(n, dtype=torch.long, device=x.device)

        def keep_best(idx: torch.Tensor, x_cand: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor
                      ) -> torch.Tensor:
            success = is_success(logits, labels[idx], targeted)
            old = best_success[idx]
            better = (success & ~old) | (~success & ~old & (loss > best_loss[idx]))
            chosen = idx[better]
            best_x[chosen] = x_cand[better]
            best_logits[chosen] = logits[better]
            best_loss[chosen] = loss[better]
            best_success[chosen] = success[better]
            return success

        lo, hi = self.bounds
        for _ in range(self.restarts):
            idx = (~best_success).nonzero().squeeze(1) if self.early_stop else torch.arange(n, device=x.device)
            if len(idx) == 0:
                break
            x0, lab = x[idx], labels[idx]
            x_adv = x0
            if self.random_start:
                x_adv = (x0 + self.norm.random_in_ball(x0, self.eps, generator)).clamp_(lo, hi)
            for _ in range(self.steps):
                x_adv = x_adv.detach().requires_grad_(True)
                logits = self.model(x_adv)
                loss = self.loss(logits, lab, targeted)
                (grad,) = torch.autograd.grad(loss.sum(), x_adv)
                queries[idx] += 1
                with torch.no_grad():
                    success = keep_best(idx, x_adv.detach(), logits.detach(), loss.detach())
                    if self.early_stop and success.any():
                        keep = ~success
                        idx, x0, lab, x_adv, grad = idx[keep], x0[keep], lab[keep], x_adv[keep], grad[keep]
                        if len(idx) == 0:
                            break
                    steps[idx] += 1
                    x_adv = x_adv.detach() + self.norm.ascent_step(grad, self.alpha)
                    x_adv = (x0 + self.norm.project(x_adv - x0, self.eps)).clamp_(lo, hi)
            if len(idx):
                with torch.no_grad():
                    logits = self.model(x_adv)
                    queries[idx] += 1
                    keep_best(idx, x_adv, logits, self.loss(logits, lab, targeted))
        return AttackResult(best_x, best_success.clone(), steps, queries, best_logits, clean_logits, target)


class FGSM(PGD):
    """Fast gradient sign method: one step of size eps from x (Goodfellow, Shlens and Szegedy 2015,
    "Explaining and Harnessing Adversarial Examples"); under L2 the fast gradient method."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, *, norm: str | Norm = "linf",
                 loss: str | Objective = "ce", **kwargs) -> None:
        super().__init__(model, eps=eps, alpha=max(float(eps), 1e-12), steps=1, norm=norm, random_start=False,
                         restarts=1, loss=loss, **kwargs)
