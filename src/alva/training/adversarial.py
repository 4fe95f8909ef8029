"""Adversarial training objectives: parts of the one training loop (:func:`alva.training.loop.fit`).

- :class:`FGSMMix`: Goodfellow, Shlens and Szegedy 2015, "Explaining and Harnessing Adversarial Examples", eq. 6.
- :class:`PGDTraining`: Madry et al. 2018, "Towards Deep Learning Models Resistant to Adversarial Attacks",
  with an eps ramp (Gowal et al. 2018 ramp eps for the same reason: PGD training of a small CNN at eps 0.3
  from scratch can stay at chance for many epochs).
- :class:`FastFGSM`: Wong, Rice and Kolter 2020, "Fast is better than free": FGSM from a random start with step
  1.25 eps, and the guard against catastrophic overfitting (PGD accuracy of a training batch after every epoch).
- :class:`TRADES`: Zhang et al. 2019, "Theoretically Principled Trade-off between Robustness and Accuracy".
- :class:`LogisticFGSM`: the closed form of FGSM training for binary logistic regression (Goodfellow et al.
  2015, section 5): ``softplus(-y (w.x + b) + eps ||w||_1)``.

Every example is made from the current model with the model in eval mode (batch-norm statistics are neither
used from the batch nor updated) and no weight gradients; the loss is then computed in train mode.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.base import attack_mode
from alva.attacks.errors import finite
from alva.attacks.norms import Norm, get_norm
from alva.attacks.pgd import PGD
from alva.evaluation.accuracy import accuracy
from alva.training.objectives import Objective


def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
            norm: Norm, random_start: bool, loss_fn=None, bounds: tuple[float, float] = (0.0, 1.0),
            clip_start: bool = True) -> torch.Tensor:
    """``steps`` projected gradient-ascent steps on ``loss_fn(logits, y)`` (the cross-entropy by default)
    from ``x`` (or a uniform random point of the eps ball, clipped to ``bounds`` unless ``clip_start`` is False),
    with the model in eval mode and its weights frozen. Every step is projected onto the eps ball and the bounds.

    The step loop of :class:`alva.attacks.PGD` without its bookkeeping
    (:meth:`~alva.attacks.engine.GradientAttack.iterate`: no best iterate, no clean forward pass). The random
    start comes from torch's global generator, which the training loop seeds per epoch.
    """
    x = x.detach()
    if eps == 0:
        return x
    loss = "ce" if loss_fn is None else (lambda logits, labels, _targeted: loss_fn(logits, labels))
    attack = PGD(model, eps=eps, alpha=alpha, steps=steps, norm=norm, random_start=False, loss=loss, bounds=bounds)
    start = uniform_around(x, eps, norm, bounds if clip_start else None) if random_start else x
    with attack_mode(model):
        return attack.iterate(x, y, start)


def uniform_around(x: torch.Tensor, radius: float, norm: Norm, bounds: tuple[float, float] | None
                   ) -> torch.Tensor:
    """A uniform random point of the ``radius`` ball of ``norm`` around each sample of ``x`` (torch's global
    generator), clipped to ``bounds`` unless they are None: the random start of the training attacks."""
    start = x + norm.random_in_ball(x, radius, None)
    return start if bounds is None else start.clamp_(*bounds)


def adversarial_loss(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """The cross-entropy of ``model`` at the training examples ``x_adv`` and its figures to log (the loss and
    the accuracy on those examples)."""
    logits = model(x_adv)
    loss = F.cross_entropy(logits, y)
    return loss, {"loss": loss.item(), "adv_acc": (logits.argmax(1) == y).float().mean().item()}


def _metrics(loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, adv_logits: torch.Tensor | None = None
             ) -> dict[str, float]:
    out = {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item()}
    if adv_logits is not None:
        out["adv_acc"] = (adv_logits.argmax(1) == y).float().mean().item()
    return out


class Adversarial(Objective):
    """Base of the adversarial objectives: an eps ball, an attack for validation, and an eps schedule.

    ``evaluate`` adds the accuracy under PGD (``eval_steps`` steps, step ``2.5 eps / steps``) on the first
    ``eval_size`` held-out images, so that early stopping can watch the adversarial validation error. Adversarial
    examples stay inside ``bounds``, the range of the model's inputs.
    """

    def __init__(self, eps: float, norm: str = "linf", ramp_epochs: int = 0, eval_steps: int = 20,
                 eval_size: int = 1000, bounds: tuple[float, float] = (0.0, 1.0)) -> None:
        eps = finite("eps", eps)
        if ramp_epochs < 0:
            raise ValueError(f"ramp_epochs must be >= 0, got {ramp_epochs}")
        self.eps = float(eps)
        self.norm_name = norm
        self.norm = get_norm(norm)
        self.ramp_epochs = int(ramp_epochs)
        self.eval_steps = int(eval_steps)
        self.eval_size = int(eval_size)
        self.current_eps = self.eps
        if not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
        self.bounds = (float(bounds[0]), float(bounds[1]))

    def step_ratio(self, alpha: float | None, default: float) -> float:
        """The attack step as a multiple of eps (it follows eps during a ramp): ``alpha / eps``, or ``default``
        when ``alpha`` is None or eps is 0.

        Raises:
            ValueError: ``alpha`` is not a finite number above 0.
        """
        if alpha is None:
            return default
        finite("alpha", alpha, strict=True)
        return alpha / self.eps if self.eps else default

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Ramp eps linearly over the first ``ramp_epochs`` epochs: ``eps * (epoch + 1) / ramp_epochs``."""
        self.current_eps = self.eps * min(1.0, (epoch + 1) / self.ramp_epochs) if self.ramp_epochs else self.eps

    def evaluate(self, model, x, y):
        from alva.evaluation.robustness import run_attack

        figures = {"clean_acc": accuracy(model, x, y)}
        if self.eval_size and self.eps > 0:
            attack = PGD(model, eps=self.eps, steps=self.eval_steps, norm=self.norm, seed=0)
            result = run_attack(attack, x[: self.eval_size], y[: self.eval_size], batch_size=500, progress=False,
                                device=next(model.parameters()).device)
            figures[f"pgd{self.eval_steps}_acc"] = (~result.success).float().mean().item()
        return figures

    def describe(self):
        # Recorded only when not the default, so that runs saved before the setting existed still resume.
        bounds = {"bounds": list(self.bounds)} if self.bounds != (0.0, 1.0) else {}
        return {"name": self.name, "eps": self.eps, "norm": self.norm_name, "ramp_epochs": self.ramp_epochs, **bounds}


class FGSMMix(Adversarial):
    """``mix * J(x, y) + (1 - mix) * J(x + eps sign(grad_x J), y)`` with fresh FGSM examples at every step
    (Goodfellow et al. 2015, eq. 6; they use ``mix = 0.5``, eps 0.25 on MNIST)."""

    name = "fgsm-mix"

    def __init__(self, eps: float = 0.25, mix: float = 0.5, **kwargs) -> None:
        super().__init__(eps, **kwargs)
        if not 0 <= mix <= 1:
            raise ValueError(f"mix must be in [0, 1], got {mix}")
        self.mix = float(mix)

    def __call__(self, model, x, y):
        x_adv = perturb(model, x, y, self.current_eps, self.current_eps, 1, self.norm, random_start=False,
                        bounds=self.bounds)
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: len(x)], logits[len(x):]
        loss = self.mix * F.cross_entropy(clean, y) + (1 - self.mix) * F.cross_entropy(adv, y)
        return loss, _metrics(loss, clean, y, adv)

    def describe(self):
        return {**super().describe(), "mix": self.mix}


class PGDTraining(Adversarial):
    """Madry et al. 2018: minimise the cross-entropy at the PGD point (``steps`` steps of ``alpha`` from a random
    start in the eps ball). ``alpha`` defaults to ``2.5 eps / steps`` and follows eps during the ramp."""

    name = "pgd"

    def __init__(self, eps: float = 0.3, steps: int = 10, alpha: float | None = None, random_start: bool = True,
                 **kwargs) -> None:
        super().__init__(eps, **kwargs)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps = int(steps)
        self.alpha_ratio = self.step_ratio(alpha, 2.5 / self.steps)
        self.random_start = bool(random_start)

    def __call__(self, model, x, y):
        eps = self.current_eps
        x_adv = perturb(model, x, y, eps, self.alpha_ratio * eps, self.steps, self.norm, self.random_start,
                        bounds=self.bounds)
        loss, figures = adversarial_loss(model, x_adv, y)
        return loss, {**figures, "eps": eps}

    def describe(self):
        return {**super().describe(), "steps": self.steps, "alpha_ratio": self.alpha_ratio,
                "random_start": self.random_start}


class FastFGSM(Adversarial):
    """Wong et al. 2020: one FGSM step of ``alpha = 1.25 eps`` from a uniform random start, projected back onto
    the eps ball. Pair it with ``TrainSettings(schedule="cyclic")``.

    The random start is not clipped to the image bounds before the gradient is taken there (only the example
    is), as in Wong et al.'s code: on MNIST at eps 0.3 clipping it (``clip_start=True``) makes training collapse
    in every seed measured (benchmarks/catastrophic_overfitting.py).

    Guard against catastrophic overfitting: after every epoch :meth:`check` measures PGD accuracy at the full eps
    (also during an eps ramp) on one training batch; when it falls below ``collapse_ratio`` times the best seen so
    far (once that best has passed 0.2) the loop rolls back to the weights before that epoch and stops, or, with
    ``TrainSettings(collapse_lr_factor=...)``, trains that epoch again at a lower learning rate.
    """

    name = "fast"

    def __init__(self, eps: float = 0.3, alpha: float | None = None, check_size: int = 512, check_steps: int = 10,
                 collapse_ratio: float = 0.5, clip_start: bool = False, **kwargs) -> None:
        super().__init__(eps, **kwargs)
        self.alpha_ratio = self.step_ratio(alpha, 1.25)
        self.clip_start = bool(clip_start)
        self.check_size = int(check_size)
        self.check_steps = int(check_steps)
        self.collapse_ratio = float(collapse_ratio)
        self.best_check = 0.0

    def __call__(self, model, x, y):
        eps = self.current_eps
        x_adv = perturb(model, x, y, eps, self.alpha_ratio * eps, 1, self.norm, random_start=True, bounds=self.bounds,
                        clip_start=self.clip_start)
        return adversarial_loss(model, x_adv, y)

    def check(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict[str, float], bool]:
        """PGD accuracy on the training batch ``(x, y)`` and whether training has collapsed."""

        xs, ys = x[: self.check_size], y[: self.check_size]
        acc = (~PGD(model, eps=self.eps, steps=self.check_steps, norm=self.norm, seed=0)(xs, ys).success
               ).float().mean().item()
        collapsed = self.best_check > 0.2 and acc < self.collapse_ratio * self.best_check
        self.best_check = max(self.best_check, acc)
        return {"check_pgd_acc": acc}, collapsed

    def state(self):
        return {"best_check": self.best_check}

    def load_state(self, state):
        self.best_check = float(state.get("best_check", 0.0))

    def describe(self):
        return {**super().describe(), "alpha_ratio": self.alpha_ratio, "clip_start": self.clip_start,
                "check_size": self.check_size, "check_steps": self.check_steps, "collapse_ratio": self.collapse_ratio}


class TRADES(Adversarial):
    """Zhang et al. 2019: ``CE(f(x), y) + beta * KL(f(x) || f(x'))`` where ``x'`` maximises the KL term
    (``steps`` sign steps of ``alpha`` from ``x + 0.001 N(0, 1)``, projected onto the eps ball)."""

    name = "trades"

    def __init__(self, eps: float = 0.3, beta: float = 6.0, steps: int = 10, alpha: float | None = None,
                 **kwargs) -> None:
        super().__init__(eps, **kwargs)
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.beta = float(beta)
        self.steps = int(steps)
        self.alpha_ratio = self.step_ratio(alpha, 2.5 / self.steps)

    def __call__(self, model, x, y):
        eps = self.current_eps
        with torch.no_grad(), attack_mode(model):
            clean_prob = F.softmax(model(x), dim=1)

        def kl_to_clean(logits, _labels):
            return F.kl_div(F.log_softmax(logits, dim=1), clean_prob, reduction="sum")

        start = (x + 0.001 * torch.randn_like(x)).clamp_(*self.bounds)
        x_adv = perturb(model, start, y, eps, self.alpha_ratio * eps, self.steps, self.norm, random_start=False,
                        loss_fn=kl_to_clean, bounds=self.bounds)
        x_adv = (x + self.norm.project(x_adv - x, eps)).clamp_(*self.bounds)
        logits = model(torch.cat([x, x_adv]))
        clean, adv = logits[: len(x)], logits[len(x):]
        robust = F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1), reduction="batchmean")
        loss = F.cross_entropy(clean, y) + self.beta * robust
        return loss, _metrics(loss, clean, y, adv)

    def describe(self):
        return {**super().describe(), "beta": self.beta, "steps": self.steps, "alpha_ratio": self.alpha_ratio}


def logistic_fgsm_loss(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y_sign: torch.Tensor, eps: float
                       ) -> torch.Tensor:
    """Mean of ``softplus(-y (w.x + b) + eps ||w||_1)`` over the batch, ``y`` in {-1, +1}: the loss of logistic
    regression at its FGSM point ``x - eps y sign(w)`` (unclipped), in closed form (Goodfellow et al. 2015)."""
    margin = y_sign * (x.flatten(1) @ w + b)
    return F.softplus(-margin + eps * w.abs().sum()).mean()


class LogisticFGSM(Objective):
    """FGSM training of binary logistic regression in the paper's closed form. The model has one output
    logit (``w.x + b``) and labels are 0/1 (the second class is 1); see :func:`logistic_fgsm_loss`."""

    name = "logistic-fgsm"
    task = "binary"

    def __init__(self, eps: float = 0.25) -> None:
        self.eps = float(eps)

    def __call__(self, model, x, y):
        linear = _single_linear(model)
        loss = logistic_fgsm_loss(linear.weight[0], linear.bias[0], x, 2 * y.float() - 1, self.eps)
        with torch.no_grad():
            acc = ((model(x).squeeze(1) > 0).long() == y).float().mean().item()
        return loss, {"loss": loss.item(), "acc": acc}

    def evaluate(self, model, x, y):
        with torch.no_grad():
            return {"clean_acc": ((model(x).squeeze(1) > 0).long() == y).float().mean().item()}

    def describe(self):
        return {"name": self.name, "eps": self.eps}


def _single_linear(model: nn.Module) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if len(layers) != 1 or layers[0].out_features != 1:
        raise ValueError("logistic-fgsm needs a model with one nn.Linear layer and one output (logistic regression)")
    return layers[0]


ADVERSARIAL_OBJECTIVES: dict[str, type[Objective]] = {
    "fgsm-mix": FGSMMix, "pgd": PGDTraining, "fast": FastFGSM, "trades": TRADES, "logistic-fgsm": LogisticFGSM,
}
