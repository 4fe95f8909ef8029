"""Auto-PGD (Croce and Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks"): PGD with momentum whose step size needs no tuning, under L-inf, L2 or L1, with the
cross-entropy, DLR or any class loss; untargeted, targeted at given classes, or (:class:`APGDTargeted`)
targeted in turn at the most likely other classes.

The algorithm (Section 3 of the paper), per sample: start at ``x(0)`` (a random point of the ball), step size
``eta = 2 eps``. Each step::

    z(k+1) = P(x(k) + eta * s(grad f(x(k))))                     s: sign for L-inf, unit vector for L2
    x(k+1) = P(x(k) + a (z(k+1) - x(k)) + (1 - a)(x(k) - x(k-1)))  a = 1 for the first step, else 0.75

where ``P`` projects onto the eps ball and the pixel bounds. At the checkpoints ``w_j = ceil(p_j N)`` with
``p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)`` the step size is halved, and the
iterate moved back to the point of highest loss so far, if

1. the loss rose in fewer than ``rho = 0.75`` of the steps since the last checkpoint, or
2. the step size was not halved at the last checkpoint and the highest loss has not grown since.

Under L1 it is l1-APGD (Croce and Hein 2021, "Mind the box: l1-APGD for sparse adversarial attacks on image
classifiers"): the iterates are projected onto the L1 ball intersected with the pixel box
(:func:`~alva.attacks.l1_box.project_l1_box`); the step spreads ``eta`` over the top ``k`` coordinates of the
gradient among those that can move (:func:`~alva.attacks.l1_box.sparse_box_step`), without momentum; ``eta``
starts at eps and ``k`` at 20% of the coordinates. Every ``max(0.04 N, 1)`` steps the sparsity adapts:
``k`` becomes the number of non-zero coordinates of the best point so far divided by 1.5; where that number
fell by more than 5% since the last check, ``eta`` goes back to eps and the iterate to the best point, else
``eta`` is divided by 1.5 (never below eps / 10).

Random numbers (the random start) are keyed per sample (:class:`~alva.attacks.keyed.KeyedRandom`): a sample
gets the same start whatever batch it is attacked in.
"""

from __future__ import annotations

import math

import torch

from alva.attacks.base import AttackResult
from alva.attacks.dlr import DLRLoss
from alva.attacks.engine import SCORE_RULE, GradientAttack, Rows, Run
from alva.attacks.errors import AttackInputError, finite, in_interval, positive_int
from alva.attacks.keyed import KeyedRandom
from alva.attacks.l1_box import entry_l0, project_l1_box, sparse_box_step
from alva.attacks.losses import ClassLoss, margin
from alva.attacks.norms import Norm, get_norm, per_sample

__all__ = ["APGD", "APGDRows", "APGDTargeted", "KeyedRandom", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    """The steps ``ceil(p_j * steps)``, ``0 < p_j < 1``, at which APGD may halve its step size."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # round() before ceil: 0.22 + 0.19 is 0.41000000000000003 in floating point, which must give 41, not 42.
    return sorted({w for w in (math.ceil(round(q * steps, 9)) for q in p[1:]) if 0 < w < steps})


class APGDRows(Rows):
    """The per-row state of an APGD search: the step size, the loss history and the best point so far."""

    eta: torch.Tensor
    n_up: torch.Tensor
    halved: torch.Tensor
    x_prev: torch.Tensor
    last_check: int
    g: torch.Tensor
    f_prev: torch.Tensor
    f_check: torch.Tensor
    f_max: torch.Tensor
    x_max: torch.Tensor
    g_max: torch.Tensor
    sparsity: torch.Tensor
    l0_check: torch.Tensor


def _apgd_rows(rows: Rows) -> APGDRows:
    if not isinstance(rows, APGDRows):
        raise TypeError(f"APGD searches on APGDRows, got {type(rows).__name__}")
    return rows


class APGD(GradientAttack):
    """Auto-PGD: a budget of ``steps`` gradient steps and nothing to tune.

    Args:
        eps: radius of the ball (>= 0) in the units of ``norm``.
        steps: gradient steps per restart (the paper's N_iter; AutoAttack uses 100).
        norm: ``"linf"``, ``"l2"`` or ``"l1"`` (l1-APGD, see the module docstring).
        loss: ``"ce"`` (default), ``"dlr"`` (the scale-invariant loss of the paper; targeted DLR when the
            attack is targeted), ``"margin"`` or any class loss (see :class:`~alva.attacks.base.Attack`).
        restarts: independent runs from new random starts; each sample keeps its worst case. With
            ``early_stop`` a restart only works on the samples not yet broken.
        rho: the fraction of steps since the last checkpoint in which the loss must have risen for the step
            size to stay (condition 1, 0.75 in the paper).
        momentum: the weight ``a`` of the new step against the last move (0.75 in the paper).
        random_start: start at a random point of the ball (else at x itself).
        eot_iter: gradients averaged per step (expectation over transformation, for randomised models); each
            pass counts as a query.

    ``target``, ``early_stop``, ``bounds`` and ``seed`` are those of every attack. A target (tensor or rule)
    makes APGD targeted: it maximises the targeted loss and succeeds when ``x_adv`` is classified as the target.

    Queries: one forward and backward pass per step plus one forward pass at the last iterate, per restart,
    on the samples still attacked, and the clean forward pass. The result for a sample is its worst case:
    a successful iterate (with early stop the first one) else the iterate of highest loss.
    """

    rule = SCORE_RULE
    rows_type = APGDRows

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, steps: int = 100, *, norm: str | Norm = "linf",
                 loss="ce", restarts: int = 1, rho: float = 0.75, momentum: float = 0.75,
                 random_start: bool = True, eot_iter: int = 1, **kwargs) -> None:
        if isinstance(loss, str) and loss.lower() == "dlr":
            loss = DLRLoss()
        super().__init__(model, loss=loss, **kwargs)
        self.eps = finite("eps", eps)
        self.rho = in_interval("rho", rho, "(0, 1]")
        self.momentum = in_interval("momentum", momentum, "[0, 1]")
        self.steps = positive_int("steps", steps)
        self.norm = get_norm(norm)
        self.restarts = positive_int("restarts", restarts)
        self.random_start = bool(random_start)
        self.eot_iter = positive_int("eot_iter", eot_iter)
        self.l1 = self.norm.name == "l1"
        self.checkpoints = frozenset(apgd_checkpoints(self.steps) if not self.l1 else
                                     range(self.l1_interval, self.steps, self.l1_interval))

    # -- the algorithm ------------------------------------------------------------------------------------

    @property
    def l1_interval(self) -> int:
        """Steps between two adaptations of the sparsity under L1."""
        return max(int(0.04 * self.steps), 1)

    def _project(self, v: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        if self.l1:
            lo, hi = self.bounds
            return x0 + project_l1_box(v - x0, self.eps, lo - x0, hi - x0)
        return (x0 + self.norm.project(v - x0, self.eps)).clamp_(*self.bounds)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        rows = _apgd_rows(rows)
        x0 = rows.x0
        start = x0.clone()
        if self.random_start and self.eps > 0:
            start = self._project(x0 + self.norm.random_in_ball(x0, self.eps, run.uniform(rows, rows.stream)), x0)
        device = x0.device
        rows.eta = torch.full((rows.n,), (1 if self.l1 else 2) * self.eps, dtype=x0.dtype, device=device)
        if self.l1:
            rows.sparsity = torch.full((rows.n,), 0.2, dtype=x0.dtype, device=device)
            rows.l0_check = torch.full((rows.n,), x0[0].numel(), dtype=torch.long, device=device)
        rows.n_up = torch.zeros(rows.n, dtype=torch.long, device=device)
        rows.halved = torch.zeros(rows.n, dtype=torch.bool, device=device)
        rows.x_prev = start
        rows.last_check = 0
        return start

    def observe(self, rows: Rows, k: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Track the highest loss (and its point and gradient) and how often the loss rose."""
        rows = _apgd_rows(rows)
        if k == 0:
            rows.f_max, rows.x_max, rows.g_max = loss.clone(), rows.x, grad
            rows.f_prev, rows.f_check = loss, loss.clone()
        else:
            rows.n_up = rows.n_up + (loss > rows.f_prev)
            up = loss > rows.f_max
            up_px = per_sample(up, grad)
            rows.f_max = torch.where(up, loss, rows.f_max)
            rows.x_max = torch.where(up_px, rows.x, rows.x_max)
            rows.g_max = torch.where(up_px, grad, rows.g_max)
            rows.f_prev = loss
        rows.g = grad

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        rows = _apgd_rows(rows)
        if k in self.checkpoints:
            (self._check_sparsity if self.l1 else self._check)(rows, k - rows.last_check)
            rows.last_check = k
        xc, x0 = rows.x, rows.x0
        if self.l1:
            rows.x_prev = xc
            return self._project(xc + sparse_box_step(rows.g, xc, self.bounds, rows.sparsity, rows.eta), x0)
        a = 1.0 if k == 0 else self.momentum
        z = self._project(xc + self.norm.ascent_step(rows.g, 1.0) * per_sample(rows.eta, xc), x0)
        x_new = self._project(xc + a * (z - xc) + (1 - a) * (xc - rows.x_prev), x0)
        rows.x_prev = xc
        return x_new

    def _check(self, s: APGDRows, span: int) -> None:
        """A checkpoint: halve the step size where condition 1 or 2 holds and restart there from the best point."""
        halve = (s.n_up < self.rho * span) | (~s.halved & (s.f_max <= s.f_check))
        if halve.any():
            px = per_sample(halve, s.x)
            s.eta = torch.where(halve, s.eta / 2, s.eta)
            s.x = torch.where(px, s.x_max, s.x)
            s.g = torch.where(px, s.g_max, s.g)
            s.x_prev = torch.where(px, s.x_max, s.x_prev)  # no momentum out of a restart
            s.f_prev = torch.where(halve, s.f_max, s.f_prev)
        s.halved = halve
        s.f_check = s.f_max.clone()
        s.n_up = torch.zeros_like(s.n_up)


    def _check_sparsity(self, s: APGDRows, span: int) -> None:
        """An L1 checkpoint: the sparsity follows the best point's; its step size and iterate as in Croce and Hein
        2021 (see the module docstring)."""
        l0 = entry_l0(s.x_max - s.x0)
        reset = l0 < 0.95 * s.l0_check
        s.sparsity = l0.to(s.sparsity.dtype) / s.x0[0].numel() / 1.5
        s.eta = torch.where(reset, torch.full_like(s.eta, self.eps), s.eta / 1.5).clamp(self.eps / 10, self.eps)
        px = per_sample(reset, s.x)
        s.x = torch.where(px, s.x_max, s.x)
        s.g = torch.where(px, s.g_max, s.g)
        s.l0_check = l0


class APGDTargeted(APGD):
    """APGD-T of AutoAttack: an untargeted attack made of targeted runs.

    For each sample, APGD with the targeted loss (default the targeted DLR) is run against the most likely
    classes other than the true one (ranked by the clean logits), one class after the other, at most
    ``n_target_classes`` of them (9 in AutoAttack), each pass only on the samples not misclassified yet.
    Success is misclassification (any wrong class); ``extras["target_class"]`` is the target of the pass
    that broke each sample (-1 where none did). The worst case kept for a sample that no pass breaks is the
    point with the smallest margin of the true class.
    """

    def __init__(self, model: torch.nn.Module, eps: float = 0.3, steps: int = 100, *, n_target_classes: int = 9,
                 norm: str | Norm = "linf", loss="dlr", **kwargs) -> None:
        if kwargs.get("target") is not None:
            raise AttackInputError("APGDTargeted picks its own targets (the most likely other classes); for "
                                   "given targets use APGD(..., target=...)")
        super().__init__(model, eps, steps, norm=norm, loss=loss, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("APGDTargeted needs a loss on class labels")
        self.n_target_classes = positive_int("n_target_classes", n_target_classes)

    def clean_score(self, clean_logits, y, target):
        return margin(clean_logits, y, False)

    def score(self, logits, loss, rows):
        return margin(logits, rows.y, False)  # the worst case kept: the smallest margin of the true class

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        if target is not None:
            raise AttackInputError("APGDTargeted picks its own targets; call it without target")
        num_classes = clean_logits.shape[1]
        if num_classes < 2:
            raise AttackInputError("APGDTargeted needs a model with at least 2 classes")
        if isinstance(self.loss, DLRLoss) and num_classes < 4:
            raise AttackInputError(f"the targeted DLR loss needs a model with at least 4 classes, got {num_classes}")
        run = Run(self, x, y, None, clean_logits, generator, self.rule)
        target_class = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        # Classes other than the true one, the most likely first.
        ranked = clean_logits.scatter(1, y[:, None], float("-inf")).argsort(dim=1, descending=True, stable=True)
        for t in range(min(self.n_target_classes, num_classes - 1)):
            for restart in range(self.restarts):
                rows = run.unbroken_rows()
                if len(rows) == 0:
                    break
                self.search(run, rows, restart, loss_target=ranked[:, t], stream=1 + t)
                newly = run.best_success[rows] & (target_class[rows] < 0)
                target_class[rows[newly]] = ranked[rows[newly], t]
        return run.result({"target_class": target_class})
