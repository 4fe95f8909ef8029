"""ALVA, Adversarial Latent Vector Adjustment: attack a classifier through a generator's latent space.

Instead of perturbing an image, move the latent vector: ``z' = z + eps * sign(grad_z J(C(G(z)), y))``
(the seed's formula, FGSM in latent space; Goodfellow et al. 2015 for the step), so that ``G(z')`` fools
the classifier ``C`` while, ideally, still looking like class ``y``. With ``steps > 1`` the step repeats,
projected onto the eps ball around ``z`` (L-inf or L2), as PGD does in pixel space (Madry et al. 2018).

An independent oracle classifier judges validity: a sample is a *valid adversarial* example when ``C``
is fooled and the oracle still sees class ``y`` in ``G(z')``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from alva.attacks.base import attack_mode, positive_int
from alva.attacks.errors import AttackInputError, check_label_range
from alva.attacks.losses import Objective, as_attack_loss
from alva.attacks.norms import Norm, get_norm
from alva.models.generative import is_conditional


@dataclass
class ALVAResult:
    """z, z_adv: latent vectors before and after; x = G(z), x_adv = G(z_adv); y: the class of each sample.

    success: C(x_adv) != y (or == target); valid: the oracle labels x_adv as y (None without an oracle).
    steps: latent steps spent per sample; queries: classifier forward passes per sample.
    """

    z: torch.Tensor
    z_adv: torch.Tensor
    x: torch.Tensor
    x_adv: torch.Tensor
    y: torch.Tensor
    success: torch.Tensor
    valid: torch.Tensor | None
    steps: torch.Tensor
    queries: torch.Tensor
    adv_logits: torch.Tensor
    target: torch.Tensor | None = None
    oracle_pred: torch.Tensor | None = None  # the oracle's label of x_adv

    @property
    def valid_adversarial(self) -> torch.Tensor:
        """Fooled the classifier and still of class y for the oracle."""
        if self.valid is None:
            raise ValueError("validity needs an oracle: build ALVA with oracle=")
        return self.success & self.valid

    def __len__(self) -> int:
        return len(self.z)


class ALVA:
    """Adversarial Latent Vector Adjustment.

    Args:
        generator: a :class:`~alva.models.generative.GenerativeModel` (``G(z)``) or a conditional one
            (``G(z, y)``), whose images the classifier takes directly.
        classifier: the model under attack.
        eps: radius of the latent ball (>= 0); with ``steps=1`` the step size too.
        steps: 1 for the seed's one-step formula; more for the iterative version.
        alpha: step size for ``steps > 1`` (default ``2.5 * eps / steps``).
        norm: ``"linf"`` (sign steps) or ``"l2"``.
        oracle: an independent classifier that judges validity, and labels ``G(z)`` for an
            unconditional generator when ``y`` is not given.
        loss: ``"ce"`` or ``"margin"`` (what the step ascends); target: ``None``, ``"random"`` or
            ``"least-likely"`` (a tensor passed to ``__call__`` overrides it).
        early_stop: stop moving each latent vector once it fools the classifier.
        seed: seeds the random targets.
    """

    def __init__(self, generator: nn.Module, classifier: nn.Module, eps: float = 0.5, steps: int = 1, *,
                 alpha: float | None = None, norm: str | Norm = "linf", oracle: nn.Module | None = None,
                 loss: str | Objective = "ce", target: str | None = None, early_stop: bool = False,
                 seed: int | None = None) -> None:
        if not 0 <= eps < float("inf"):
            raise AttackInputError(f"eps must be >= 0 and finite, got {eps}")
        self.steps = positive_int("steps", steps)
        if alpha is not None and not 0 < alpha < float("inf"):
            raise AttackInputError(f"alpha must be > 0 and finite, got {alpha}")
        self.generator, self.classifier, self.oracle = generator, classifier, oracle
        self.conditional = is_conditional(generator)
        self.eps = float(eps)
        self.alpha = self.eps if self.steps == 1 else (float(alpha) if alpha else 2.5 * self.eps / self.steps)
        self.norm = get_norm(norm)
        self.loss = as_attack_loss(loss)
        if target is not None and target not in self.loss.target_rules:
            raise AttackInputError(f"unknown target rule {target!r}; choose one of {self.loss.target_rules}")
        self.target_rule = target
        self.early_stop = bool(early_stop)
        self.seed = seed

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.generator(z, y) if self.conditional else self.generator(z)

    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None, target: torch.Tensor | None = None
                 ) -> ALVAResult:
        """Attack the latent batch ``z``; ``y`` is the condition (conditional generator) or the class of
        ``G(z)`` (default for an unconditional one: the oracle's label)."""
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.ndim < 2 or len(z) == 0:
            raise AttackInputError(f"z must be a non-empty floating-point batch of latent vectors, got "
                                   f"{type(z).__name__} {tuple(getattr(z, 'shape', ()))}")
        if not torch.isfinite(z).all():
            raise AttackInputError("z contains NaN or infinite values")
        models = [m for m in (self.generator, self.classifier, self.oracle) if m is not None]
        with contextlib.ExitStack() as stack:
            for model in models:
                stack.enter_context(attack_mode(model))
            y = self._labels(z, y)
            with torch.no_grad():
                x = self.generate(z, y)
                clean_logits = self.classifier(x)
            y = self.loss.check_labels(y, clean_logits.shape[1])
            generator = torch.Generator(device=z.device).manual_seed(self.seed) if self.seed is not None else None
            if target is not None:
                target = self.loss.check_targets(target, y, clean_logits.shape[1])
            elif self.target_rule is not None:
                target = self.loss.pick_targets(self.target_rule, y, clean_logits, generator)
            z_adv, steps, queries = self._ascend(z.detach(), y, target, clean_logits)
            with torch.no_grad():
                x_adv = self.generate(z_adv, y)
                adv_logits = self.classifier(x_adv)
                oracle_pred = None if self.oracle is None else self.oracle(x_adv).argmax(1)
                valid = None if oracle_pred is None else oracle_pred == y
            return ALVAResult(z.detach(), z_adv, x, x_adv, y, self.loss.success(adv_logits, y, target), valid,
                              steps, queries + 1, adv_logits, target, oracle_pred)

    def _labels(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            if not isinstance(y, torch.Tensor) or y.shape != (len(z),):
                raise AttackInputError(f"y must be a tensor of {len(z)} class labels")
            y = self.loss.check_labels(y.to(z.device), None)
            if self.conditional:
                check_label_range(y, self.generator.num_classes, "labels")
            return y
        if self.conditional:
            raise AttackInputError("a conditional generator needs y, the class to generate (G.get_labels(n))")
        if self.oracle is None:
            raise AttackInputError("an unconditional generator needs y or an oracle= to label G(z)")
        with torch.no_grad():
            return self.oracle(self.generator(z)).argmax(1)

    def _ascend(self, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, clean_logits: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The latent steps; returns the final z per sample (stopped samples keep the z that fooled C)."""
        n = len(z)
        z_adv = z.clone()
        steps = torch.zeros(n, dtype=torch.long, device=z.device)
        queries = torch.ones(n, dtype=torch.long, device=z.device)
        active = torch.arange(n, device=z.device)
        if self.early_stop:
            active = active[~self.loss.success(clean_logits, y, target)]
        for _ in range(self.steps):
            if len(active) == 0:
                break
            za = z_adv[active].requires_grad_(True)
            ya, ta = y[active], None if target is None else target[active]
            logits = self.classifier(self.generate(za, ya))
            (grad,) = torch.autograd.grad(self.loss(logits, ya, ta).sum(), za)
            queries[active] += 1
            with torch.no_grad():
                if self.early_stop:
                    keep = ~self.loss.success(logits, ya, ta)
                    active, za, grad = active[keep], za[keep], grad[keep]
                    if len(active) == 0:
                        break
                step = self.norm.ascent_step(grad, self.alpha)
                z_adv[active] = z[active] + self.norm.project(za.detach() + step - z[active], self.eps)
                steps[active] += 1
        return z_adv, steps, queries


def alva_summary(result: ALVAResult) -> dict[str, float]:
    """Success, validity, valid adversarial rate, and mean latent and pixel distances."""
    dz = (result.z_adv - result.z).flatten(1)
    dx = (result.x_adv - result.x).flatten(1)
    summary = {
        "n": len(result),
        "success": result.success.float().mean().item(),
        "latent_linf": dz.abs().amax(1).mean().item(),
        "latent_l2": dz.norm(dim=1).mean().item(),
        "pixel_linf": dx.abs().amax(1).mean().item(),
        "pixel_l2": dx.norm(dim=1).mean().item(),
        "mean_steps": result.steps.float().mean().item(),
    }
    if result.valid is not None:
        summary["validity"] = result.valid.float().mean().item()
        summary["valid_adversarial"] = result.valid_adversarial.float().mean().item()
    return summary
