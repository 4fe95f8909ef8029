"""The Jacobian-based saliency map attack (Papernot, McDaniel, Jha, Fredrikson, Celik and Swami 2016, "The
limitations of deep learning in adversarial settings"): a targeted L0 attack that changes two input features
per step.

At each step, with ``a = d Z_t / d x`` (the gradient of the target's logit) and ``b = sum_{j != t} d Z_j / d x``
(that of the other logits), the pair of features ``(p, q)`` of the search domain with the largest saliency

    (a_p + a_q) * |b_p + b_q|   where   a_p + a_q > 0  and  b_p + b_q < 0

is moved by ``theta`` (clipped to the bounds): the pair that raises the target most while lowering the other
classes (for ``theta < 0`` the signs of ``a`` and ``b`` are reversed: the features decrease). Where no pair
satisfies both signs, the pair of largest ``(a_p + a_q) - (b_p + b_q)`` is taken. The search domain is the
features that can still move in the direction of ``theta``. The attack stops at the target or after
``floor(gamma * d / 2)`` steps (``d`` features: at most a share ``gamma`` of them changed). The saliency map
is computed on the logits (the JSMA-Z variant of Carlini and Wagner 2017), which do not saturate as the
softmax probabilities do.

JSMA is targeted by nature: given no target, each sample gets one by the attack's target rule (default
``"random"``: a class other than the true one, uniformly, as in the paper's evaluation over all targets).
Each step costs one forward pass and two backward passes (one query). The engine
(:class:`~alva.attacks.engine.GradientAttack`) owns the loop; the attack supplies the two gradients
(:meth:`JSMA.gradient`) and the pair step.
"""

from __future__ import annotations

import torch

from alva.attacks.base import AttackInputError, AttackResult
from alva.attacks.engine import GradientAttack, Rows
from alva.attacks.errors import finite, in_interval
from alva.attacks.losses import ClassLoss
from alva.attacks.sparse_rs import changed_pixels

__all__ = ["JSMA", "saliency_pairs"]

_PAIR_BUDGET = 2**22  # pair scores computed at once (memory: a few times this many floats)


def saliency_pairs(a: torch.Tensor, b: torch.Tensor, domain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The most salient pair ``(p, q)``, ``p != q``, of each row (``a``, ``b``, ``domain``: n x d), and whether
    the row had a pair in its domain at all (an n-vector); see the module docstring."""
    n, d = a.shape
    best = torch.zeros(n, dtype=torch.long, device=a.device)
    found = torch.zeros(n, dtype=torch.bool, device=a.device)
    off_diagonal = ~torch.eye(d, dtype=torch.bool, device=a.device)
    chunk = max(1, _PAIR_BUDGET // (d * d))
    for begin in range(0, n, chunk):
        rows = slice(begin, begin + chunk)
        valid = domain[rows, :, None] & domain[rows, None, :] & off_diagonal
        alpha = a[rows, :, None] + a[rows, None, :]
        beta = b[rows, :, None] + b[rows, None, :]
        salient = valid & (alpha > 0) & (beta < 0)
        any_salient = salient.flatten(1).any(dim=1)
        fallback = (alpha - beta).masked_fill_(~valid, float("-inf")).flatten(1).argmax(dim=1)
        score = alpha.mul_(beta.neg_()).masked_fill_(~salient, float("-inf")).flatten(1)
        best[rows] = torch.where(any_salient, score.argmax(dim=1), fallback)
        found[rows] = valid.flatten(1).any(dim=1)
    return torch.stack([best // d, best % d], dim=1), found


class JSMA(GradientAttack):
    """Jacobian-based saliency map attack (targeted, L0).

    Args:
        theta: the change of each selected feature per step (``1``: set it to the upper bound for images in
            [0, 1]; negative values decrease features).
        gamma: the largest share of the features that may be changed (in (0, 1]); the attack runs at most
            ``floor(gamma * d / 2)`` steps.
        target: the rule that picks each sample's target when the call gives none (``"random"`` or
            ``"least-likely"``).
        early_stop: stop on each sample when it reaches its target (default True, as in the paper).

    ``loss`` (ranks failed iterates; ``"ce"`` or ``"margin"``), ``bounds`` and ``seed`` (the random targets) are
    those of every attack. ``extras["changed_pixels"]``: the pixels where ``x_adv`` differs from ``x``.
    """

    def __init__(self, model: torch.nn.Module, theta: float = 1.0, gamma: float = 0.1, *, target: str = "random",
                 early_stop: bool = True, **kwargs) -> None:
        super().__init__(model, target=target, early_stop=early_stop, **kwargs)
        if target is None:
            raise AttackInputError("JSMA is targeted: give a target rule (random, least-likely) or target labels")
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("JSMA needs a classifier with class labels")
        self.theta = float(theta)
        finite("|theta|", abs(self.theta), strict=True)
        self.gamma = in_interval("gamma", gamma, "(0, 1]")

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        self.steps = max(1, int(self.gamma * x[0].numel() / 2))
        return super().run(x, y, target, clean_logits, generator)

    def gradient(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits and loss at ``rows.x``, and the gradients of the target's logit and of the sum of the
        others, stacked (n x 2 x ...), from one forward pass."""
        x = rows.x.detach().requires_grad_(True)
        logits = self.predict(x, rows.y)
        target = rows.loss_target if rows.loss_target is not None else rows.y
        own = logits.gather(1, target[:, None]).sum()
        (a,) = torch.autograd.grad(own, x, retain_graph=True)
        (total,) = torch.autograd.grad(logits.sum(), x)
        loss = self.loss(logits.detach(), rows.y, rows.loss_target)
        return logits, loss, torch.stack([a, total - a], dim=1)

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        lo, hi = self.bounds
        x = rows.x.reshape(rows.n, -1)
        direction = 1.0 if self.theta > 0 else -1.0
        a, b = (grad[:, i].reshape(rows.n, -1) * direction for i in range(2))
        domain = x < hi if self.theta > 0 else x > lo
        pair, found = saliency_pairs(a, b, domain)
        moved = x.scatter_add(1, pair, torch.full_like(pair, self.theta, dtype=x.dtype)).clamp_(lo, hi)
        return torch.where(found[:, None], moved, x).view_as(rows.x)

    def finish(self, run) -> AttackResult:
        return run.result({"changed_pixels": changed_pixels(run.x, run.best_x)})
