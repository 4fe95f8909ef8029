"""Projected gradient descent (Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial
Attacks") under any :class:`~alva.attacks.norms.Norm`, with random start, restarts and per-sample early stop;
and FGSM, its one-step case (Goodfellow, Shlens and Szegedy 2015)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from alva.attacks.base import AttackResult
from alva.attacks.engine import GradientAttack, Rows, Run
from alva.attacks.errors import finite, positive_int
from alva.attacks.norms import Norm, get_norm

__all__ = ["FGSM", "PGD"]


@dataclass
class _CleanGraph:
    """The clean forward pass of a call, kept with its graph for the first gradient at the clean points."""

    leaf: torch.Tensor
    logits: torch.Tensor
    used: bool = False

    def serves(self, rows: Rows) -> bool:
        """Whether ``rows`` ask for the gradient at the clean points of the whole batch of this pass."""
        x = rows.x
        return (not self.used and rows.rows is None and x is rows.x0 and x.shape == self.leaf.shape
                and x.data_ptr() == self.leaf.data_ptr() and x.stride() == self.leaf.stride())


class PGD(GradientAttack):
    """Iterated gradient ascent on a loss, projected onto the eps ball around x and the pixel bounds.

    Args:
        eps: radius of the ball (>= 0), in the units of ``norm``.
        alpha: step size; default ``2.5 * eps / steps`` (Madry et al.).
        steps: gradient steps per restart (>= 1).
        norm: ``"linf"`` or ``"l2"`` (any :class:`~alva.attacks.norms.Norm`).
        random_start: start each restart at a uniform point of the ball, drawn per sample from the seed and
            the sample's pixels (:class:`~alva.attacks.keyed.KeyedRandom`): a sample's start does not depend
            on the batch it is in.
        restarts: independent runs; each sample keeps its worst case (a success, else the highest loss).
        eot_iter: gradients averaged per step (expectation over transformation, Athalye et al. 2018, for
            models with random transforms); each pass counts as a query.

    ``loss``, ``target``, ``early_stop``, ``bounds`` and ``seed`` are those of every
    :class:`~alva.attacks.base.Attack`; the loss is ``"ce"`` (cross-entropy, default) or ``"margin"``
    (Carlini-Wagner) for class labels.

    The result for a sample is the last iterate where that succeeds (the textbook PGD point), else the
    first successful iterate, else the iterate of highest loss. Every iterate is checked for success with
    the logits its gradient step already computed, so keeping the best iterate costs no extra forward pass.
    Without a random start (FGSM) and without early stop, the first gradient is taken at the clean points:
    the clean forward pass keeps its graph and serves as that gradient's pass, one forward pass fewer
    (and one query fewer per sample).
    """

    _clean_graph: _CleanGraph | None = None

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, alpha: float | None = None, steps: int = 40,
                 *, norm: str | Norm = "linf", random_start: bool = True, restarts: int = 1,
                 eot_iter: int = 1, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.eps = finite("eps", eps)
        self.steps = positive_int("steps", steps)
        self.alpha = finite("alpha", alpha, strict=True) if alpha is not None else 2.5 * self.eps / self.steps
        self.norm = get_norm(norm)
        self.random_start = bool(random_start)
        self.restarts = positive_int("restarts", restarts)
        self.eot_iter = positive_int("eot_iter", eot_iter)

    def clean_pass(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.random_start or self.early_stop or self.eot_iter != 1 or self.eps == 0 or not torch.is_grad_enabled():
            return super().clean_pass(x, y)
        leaf = x.detach().requires_grad_(True)
        logits = self.predict(leaf, y)
        if isinstance(logits, torch.Tensor):  # anything else: the caller's check names what is wrong with it
            self._clean_graph = _CleanGraph(leaf, logits)
            logits = logits.detach()
        return logits

    def gradient(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        kept = self._clean_graph
        if kept is None or not kept.serves(rows):
            return super().gradient(rows)
        kept.used = True
        loss = self.loss(kept.logits, rows.y, rows.loss_target)
        (grad,) = torch.autograd.grad(loss.sum(), kept.leaf)
        kept.leaf, kept.logits = kept.leaf.detach(), kept.logits.detach()  # the graph is freed
        return kept.logits, loss.detach(), grad

    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> AttackResult:
        try:
            return super().__call__(x, y, target)
        finally:
            self._clean_graph = None  # no graph outlives the call, also when it raises

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        if self.eps == 0:  # the ball is the point x: the clean pass is the whole attack (the first point of eps curves)
            n, device = len(x), x.device
            return AttackResult(x.clone(), self.is_success(x, clean_logits, y, target),
                                torch.zeros(n, dtype=torch.long, device=device),
                                torch.ones(n, dtype=torch.long, device=device), clean_logits, clean_logits, target)
        kept = self._clean_graph
        result = super().run(x, y, target, clean_logits, generator)
        if kept is not None and kept.used:
            result.queries -= 1  # the first step's forward pass was the clean one, counted once
        return result

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        if not self.random_start:
            return rows.x0
        noise = self.norm.random_in_ball(rows.x0, self.eps, run.uniform(rows, rows.stream))
        return (rows.x0 + noise).clamp_(*self.bounds)

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        """``rows.x`` plus an ascent step, projected onto the eps ball around ``rows.x0`` and the bounds.

        Overwrites ``grad``: the norm may compute the step in its memory, so that a step allocates less.
        """
        return self.norm.ascend(rows.x, grad, rows.x0, self.alpha, self.eps).clamp_(*self.bounds)


class FGSM(PGD):
    """Fast gradient sign method: one step of size eps from x, ``clip(x + eps * sign(grad))`` (Goodfellow,
    Shlens and Szegedy 2015, "Explaining and Harnessing Adversarial Examples"); under L2 the fast gradient
    method."""

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, *, norm: str | Norm = "linf", **kwargs) -> None:
        super().__init__(model, eps=eps, alpha=max(float(finite("eps", eps)), 1e-12), steps=1, norm=norm,
                         random_start=False, restarts=1, **kwargs)

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        if self.norm.name == "linf" and rows.x is rows.x0 and self.alpha <= self.eps:
            # x + eps sign(grad) lies in the eps ball around x: only the bounds project it.
            return torch.add(rows.x, grad.sign_(), alpha=self.alpha).clamp_(*self.bounds)
        return super().step(rows, grad, k)
