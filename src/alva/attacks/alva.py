"""ALVA, Adversarial Latent Vector Adjustment: attack a classifier through a generator's latent space.

Instead of perturbing an image, move the latent vector: ``z' = z + eps * sign(grad_z J(C(G(z)), y))``
(FGSM in latent space; Goodfellow et al. 2015 for the step), so that ``G(z')`` fools the classifier ``C``
while, ideally, still looking like class ``y``. With ``steps > 1`` the step repeats, projected onto the eps
ball around ``z`` (L-inf or L2): ALVA is :class:`~alva.attacks.pgd.PGD` (Madry et al. 2018) on the latent
vector, with ``C(G(z))`` as the model, no bounds and no random start.

An independent oracle classifier judges validity: a sample is a *valid adversarial* example when ``C``
is fooled and the oracle still sees class ``y`` in ``G(z')``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from alva.attacks.base import UNBOUNDED, LatentResult, attack_mode
from alva.attacks.engine import LAST_ITERATE
from alva.attacks.errors import AttackInputError, check_label_range
from alva.attacks.losses import AttackLoss, Objective
from alva.attacks.norms import Norm
from alva.attacks.pgd import PGD
from alva.models.generative import class_count, is_conditional

__all__ = ["ALVA", "ALVAResult", "alva_summary"]

@dataclass
class ALVAResult(LatentResult):
    """A :class:`~alva.attacks.base.LatentResult` (``x_adv = G(z_adv)``, ``x = G(z)``) with ``z_adv``, the
    latent vectors after the attack. steps: latent steps per sample; queries: classifier forward passes."""

    z_adv: torch.Tensor | None = None


class ALVA(PGD):
    """Adversarial Latent Vector Adjustment: PGD on the latent vector, attacking ``C(G(z))``.

    Args:
        generator: a :class:`~alva.models.generative.GenerativeModel` (``G(z)``) or a conditional one
            (``G(z, y)``), whose images the classifier takes directly.
        classifier: the model under attack.
        eps: radius of the latent ball (>= 0); with ``steps=1`` the step size too.
        steps: 1 for the one-step formula ``z + eps * sign(grad)``; more for the iterative version.
        alpha: step size for ``steps > 1`` (default ``2.5 * eps / steps``).
        norm: ``"linf"`` (sign steps) or ``"l2"``.
        oracle: an independent classifier that judges validity, and labels ``G(z)`` for an
            unconditional generator when ``y`` is not given.
        loss: ``"ce"`` or ``"margin"`` (what the step ascends).
        target: ``None``, ``"random"`` or ``"least-likely"`` (a tensor passed to ``__call__`` overrides it).
        early_stop: stop moving each latent vector once it fools the classifier.
        seed: seeds the random targets.

    The result for a sample is the latent vector where its walk stopped: the last iterate, or with early stop
    the first one that fools the classifier.
    """

    rule = LAST_ITERATE

    def __init__(self, generator: nn.Module, classifier: nn.Module, eps: float = 0.5, steps: int = 1, *,
                 alpha: float | None = None, norm: str | Norm = "linf", oracle: nn.Module | None = None,
                 loss: str | Objective = "ce", target: str | None = None, early_stop: bool = False,
                 seed: int | None = None) -> None:
        super().__init__(classifier, eps, alpha if steps != 1 else None, steps, norm=norm, random_start=False,
                         loss=loss, target=target, early_stop=early_stop, bounds=UNBOUNDED, seed=seed)
        if self.steps == 1:
            self.alpha = self.eps
        self.generator, self.classifier, self.oracle = generator, classifier, oracle
        self.conditional = is_conditional(generator)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.generator(z, y) if self.conditional else self.generator(z)

    def predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.generate(x, y))

    def models_in_use(self) -> tuple[nn.Module, ...]:
        return tuple(m for m in (self.generator, self.classifier, self.oracle) if m is not None)

    def __call__(self, z: torch.Tensor, y: torch.Tensor | None = None, target: torch.Tensor | None = None
                 ) -> ALVAResult:
        """Attack the latent batch ``z``; ``y`` is the condition (conditional generator) or the class of
        ``G(z)`` (default for an unconditional one: the oracle's label)."""
        check_latent(z)
        result = super().__call__(z, self._labels(z, y), target)
        assert isinstance(result, ALVAResult)
        return result

    def run(self, x, y, target, clean_logits, generator) -> ALVAResult:
        latent = super().run(x, y, target, clean_logits, generator)
        with torch.no_grad():
            images, images_adv = self.generate(x, y), self.generate(latent.x_adv, y)
            oracle_pred = None if self.oracle is None else self.oracle(images_adv).argmax(1)
        return ALVAResult(images_adv, latent.success, latent.steps, latent.queries, latent.adv_logits, clean_logits,
                          target, z=x, z_adv=latent.x_adv, x=images, y=y,
                          valid=None if oracle_pred is None else oracle_pred == y, oracle_pred=oracle_pred)

    def _labels(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is not None:
            return latent_labels(self.loss, z, y, self.generator if self.conditional else None)
        if self.conditional:
            raise AttackInputError("a conditional generator needs y, the class to generate (G.get_labels(n))")
        if self.oracle is None:
            raise AttackInputError("an unconditional generator needs y or an oracle= to label G(z)")
        with contextlib.ExitStack() as modes:
            for model in (self.generator, self.oracle):
                modes.enter_context(attack_mode(model))
            with torch.no_grad():
                return self.oracle(self.generator(z)).argmax(1)


def check_latent(z: torch.Tensor) -> None:
    """Raise :class:`AttackInputError` unless ``z`` is a non-empty, finite, floating-point batch of latent vectors."""
    if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.ndim < 2 or len(z) == 0:
        raise AttackInputError(f"z must be a non-empty floating-point batch of latent vectors, got "
                               f"{type(z).__name__} {tuple(getattr(z, 'shape', ()))}")
    if not torch.isfinite(z).all():
        raise AttackInputError("z contains NaN or infinite values")


def latent_labels(loss: AttackLoss, z: torch.Tensor, y: torch.Tensor, generator: nn.Module | None) -> torch.Tensor:
    """``y`` checked as the class labels of the latent batch ``z`` (by ``loss``, and within the classes of a
    conditional ``generator`` when given), on ``z``'s device."""
    if not isinstance(y, torch.Tensor) or y.shape != (len(z),):
        raise AttackInputError(f"y must be a tensor of {len(z)} class labels")
    y = loss.check_labels(y.to(z.device), None)
    if generator is not None:
        check_label_range(y, class_count(generator), "labels")
    return y


def validity_summary(result: LatentResult) -> dict[str, float]:
    """The share of samples the oracle still labels ``y`` and of valid successes (empty without an oracle)."""
    if result.valid is None:
        return {}
    return {"validity": result.valid.float().mean().item(),
            "valid_adversarial": result.valid_adversarial.float().mean().item()}


def distance_summary(name: str, delta: torch.Tensor) -> dict[str, float]:
    """Mean L-inf and L2 size of the per-sample differences ``delta``, as ``{name}_linf`` and ``{name}_l2``."""
    delta = delta.flatten(1)
    return {f"{name}_linf": delta.abs().amax(1).mean().item(), f"{name}_l2": delta.norm(dim=1).mean().item()}


def alva_summary(result: ALVAResult) -> dict[str, float]:
    """Success, validity, valid adversarial rate, and mean latent and pixel distances."""
    if result.z is None or result.z_adv is None or result.x is None:
        raise ValueError("an ALVA summary needs the result's z, z_adv and x")
    return {"n": len(result), "success": result.success.float().mean().item(),
            **distance_summary("latent", result.z_adv - result.z), **distance_summary("pixel", result.x_adv - result.x),
            "mean_steps": result.steps.float().mean().item(), **validity_summary(result)}
