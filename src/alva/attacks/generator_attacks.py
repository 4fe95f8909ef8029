"""Generator attacks: a trained network makes the adversarial example in one forward pass.

- :class:`AdvGANAttack` (Xiao et al. 2018, "Generating Adversarial Examples with Adversarial Networks"): a
  perturbation generator ``g`` maps an image (and, when targeted, a target class) to a perturbation;
  ``x_adv = clip(x + eps * tanh(g(x)))``, then projected once more onto the L-inf ball of radius ``eps`` around
  ``x`` and the pixel bounds, so the bound holds by construction and by projection. Train ``g`` with
  :func:`alva.training.advgan.train_advgan`. It is an :class:`~alva.attacks.base.Attack`: build with the model
  and the generator, call on ``(x, y)``.
- :class:`UnrestrictedGeneratorAttack`: an adversarial conditional generator ``G_adv(z, y)`` (AT-GAN, Wang et al.
  2019; see :mod:`alva.training.atgan`) makes new images of class ``y`` that
  should fool the classifier. Like :class:`~alva.attacks.alva.ALVA` it takes latent vectors, and an
  independent oracle classifier judges validity: does the image still show class ``y``?
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva.attacks.alva import check_latent, distance_summary, latent_labels, validity_summary
from alva.attacks.base import UNBOUNDED, Attack, AttackResult, LatentResult, attack_mode
from alva.attacks.errors import AttackInputError, finite, positive_int
from alva.attacks.norms import NORMS
from alva.models.generative import draw_labels, draw_noise, is_conditional
from alva.models.zoo import read_weights, stored_card, write_weights

PERTURBATION_KIND = "perturbation-generator"

__all__ = ["AdvGANAttack", "GeneratorAttackResult", "PerturbationGenerator", "UnrestrictedGeneratorAttack",
           "advgan_summary", "generator_attack_summary", "load_perturbation_generator", "save_perturbation_generator"]


class PerturbationGenerator(nn.Module):
    """AdvGAN's generator, small: an encoder (two stride-2 convolutions), two residual blocks and a decoder
    (two transposed convolutions) from a ``C x H x W`` image (H, W divisible by 4) to an unbounded ``C x H x W``
    map; :class:`AdvGANAttack` bounds it with ``eps * tanh``.

    With ``num_classes > 0`` it is targeted: the one-hot target class enters as extra constant input channels.
    """

    architecture = "advgan-conv"
    card: dict[str, Any]

    def __init__(self, channels: int = 1, width: int = 32, num_classes: int = 0) -> None:
        super().__init__()
        self.channels, self.width, self.num_classes = int(channels), int(width), int(num_classes)
        w = self.width
        self.encode = nn.Sequential(
            nn.Conv2d(self.channels + self.num_classes, w, 3, padding=1), nn.InstanceNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * w), nn.ReLU(),
            nn.Conv2d(2 * w, 4 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(4 * w), nn.ReLU(),
        )
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.InstanceNorm2d(4 * w), nn.ReLU(),
                          nn.Conv2d(4 * w, 4 * w, 3, padding=1), nn.InstanceNorm2d(4 * w))
            for _ in range(2))
        self.decode = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * w), nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.InstanceNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, self.channels, 3, padding=1),
        )

    @property
    def targeted(self) -> bool:
        return self.num_classes > 0

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        if self.targeted:
            if target is None:
                raise AttackInputError("this perturbation generator is targeted: it needs target classes")
            onehot = torch.nn.functional.one_hot(target.long(), self.num_classes).to(x.dtype)
            x = torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        h = self.encode(x)
        for block in self.blocks:
            h = h + block(h)
        return self.decode(h)

    def spec(self) -> dict[str, Any]:
        return {"architecture": self.architecture, "channels": self.channels, "width": self.width,
                "num_classes": self.num_classes}


def save_perturbation_generator(generator: PerturbationGenerator, card: dict[str, Any],
                                path: str | os.PathLike) -> Path:
    """Write ``path`` (``.safetensors`` with the card in its header) and the card beside it (``.json``)."""
    return write_weights(generator, {"kind": PERTURBATION_KIND, **generator.spec(), **card}, path)


def load_perturbation_generator(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                                ) -> PerturbationGenerator:
    """A perturbation generator in eval mode from a ``.safetensors`` file or a run folder; never unpickles.

    The card (eps, target model, settings) is ``generator.card``.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "generator.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no perturbation generator at {path}")
    card = stored_card(path)
    if card.get("kind") != PERTURBATION_KIND:
        raise ValueError(f"{path} is not a perturbation generator (card kind {card.get('kind')!r})")
    generator = PerturbationGenerator(int(card["channels"]), int(card["width"]), int(card["num_classes"]))
    generator.load_state_dict(read_weights(path), strict=True)
    generator.card = card
    return generator.to(device).eval()


def bounded_perturbation(generator: nn.Module, x: torch.Tensor, eps: float, bounds: tuple[float, float],
                         target: torch.Tensor | None = None) -> torch.Tensor:
    """``x_adv = clip(x + eps * tanh(g(x)))`` projected onto the eps L-inf ball and the bounds (differentiable
    through the tanh; the projection only removes rounding). NaN outputs count as 0."""
    lo, hi = bounds
    raw = generator(x, target) if target is not None else generator(x)
    raw = torch.nan_to_num(raw, nan=0.0)
    x_adv = (x + eps * torch.tanh(raw)).clamp(lo, hi)
    return (x + NORMS["linf"].project(x_adv - x, eps)).clamp(lo, hi)


class AdvGANAttack(Attack):
    """AdvGAN (Xiao et al. 2018): one forward pass of a trained perturbation generator.

    Args:
        model: the classifier under attack (the one the generator was trained against, or another one to
            measure transfer).
        perturbation_generator: a :class:`PerturbationGenerator` (``load_perturbation_generator(run_folder)``).
        eps: the L-inf bound; ``None`` takes it from the generator's card. Enforced: ``|x_adv - x| <= eps``
            and ``x_adv`` within ``bounds`` for every sample.
        target: ``None`` (untargeted) or ``"random"`` / ``"least-likely"`` for a targeted generator; a target
            tensor passed to ``__call__`` overrides it.
        batch_size: images per generator forward pass.

    The result counts one query per sample: the target model's forward pass on ``x_adv`` that checks success
    (making ``x_adv`` needs none). ``steps`` is 1: one generator pass.
    """

    def __init__(self, model: nn.Module, perturbation_generator: nn.Module, eps: float | None = None, *,
                 target: str | None = None, loss: str = "margin", bounds: tuple[float, float] = (0.0, 1.0),
                 seed: int | None = None, batch_size: int = 1000) -> None:
        super().__init__(model, loss=loss, target=target, bounds=bounds, seed=seed)
        if not isinstance(perturbation_generator, nn.Module):
            raise AttackInputError("perturbation_generator must be a torch.nn.Module")
        if eps is None:
            eps = getattr(perturbation_generator, "card", {}).get("eps")
            if eps is None:
                raise AttackInputError("eps is not given and the generator has no card with eps")
        self.generator = perturbation_generator
        self.eps = finite("eps", eps)
        self.batch_size = int(batch_size)
        self.targeted_generator = bool(getattr(perturbation_generator, "targeted", False))
        if target is not None and not self.targeted_generator:
            raise AttackInputError("target= needs a targeted perturbation generator (trained with targeted=True)")

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        if (target is not None) != self.targeted_generator:
            raise AttackInputError("a targeted generator needs targets and an untargeted one takes none")
        b = self.batch_size
        with attack_mode(self.generator), torch.no_grad():
            x_adv = torch.cat([bounded_perturbation(self.generator, x[i:i + b], self.eps, self.bounds,
                                                    None if target is None else target[i:i + b])
                               for i in range(0, len(x), b)])
            adv_logits = self.model(x_adv)
        ones = torch.ones(len(x), dtype=torch.long, device=x.device)
        return AttackResult(x_adv, self.loss.success(adv_logits, y, target), ones, ones.clone(), adv_logits,
                            clean_logits, target)


class GeneratorAttackResult(LatentResult):
    """A :class:`~alva.attacks.base.LatentResult`: ``x_adv = G_adv(z, y)``; ``x`` is ``G(z, y)`` of the reference
    generator (None without one). queries: classifier forward passes per sample (1); ``clean_logits`` are the
    adversarial ones (the attack has no other point)."""


class UnrestrictedGeneratorAttack(Attack):
    """Unrestricted adversarial examples from an adversarial conditional generator: ``x_adv = G_adv(z, y)``.

    An :class:`~alva.attacks.base.Attack` on the latent vectors (no bounds) whose model is
    ``C(G_adv(z, y))``, called as ``attack(z, y)``: one forward pass, no search.

    Args:
        generator: ``G_adv``, a conditional generator (``G(z, y)``) fine-tuned to fool ``classifier``
            (:func:`alva.training.atgan.finetune_atgan`, or :func:`~alva.training.atgan.train_against_critic`).
        classifier: the model under attack.
        oracle: an independent classifier that judges validity (``mnist/mlp`` in alva's figures).
        reference: the original generator ``G``, to return ``G(z, y)`` beside ``G_adv(z, y)`` (optional).
        batch_size: samples per forward pass.
    """

    def __init__(self, generator: nn.Module, classifier: nn.Module, *, oracle: nn.Module | None = None,
                 reference: nn.Module | None = None, loss: str = "margin", batch_size: int = 1000) -> None:
        if not is_conditional(generator):
            raise AttackInputError("UnrestrictedGeneratorAttack needs a conditional generator G_adv(z, y)")
        super().__init__(classifier, loss=loss, bounds=UNBOUNDED)
        self.generator, self.classifier, self.oracle, self.reference = generator, classifier, oracle, reference
        self.batch_size = positive_int("batch_size", batch_size)

    def sample(self, n: int, seed: int = 0, target: torch.Tensor | None = None) -> GeneratorAttackResult:
        """Attack ``n`` seeded draws of ``(z, y)`` (the same draws as :func:`alva.evaluation.generative.generate`)."""
        z = draw_noise(self.generator, n, seed=seed)
        y = draw_labels(self.generator, n, seed=seed + 1)
        return self(z, y, target)

    def models_in_use(self) -> tuple[nn.Module, ...]:
        return tuple(m for m in (self.generator, self.classifier, self.oracle, self.reference) if m is not None)

    def predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier(self.generator(zb, yb))
                          for zb, yb in zip(x.split(self.batch_size), y.split(self.batch_size), strict=True)])

    def __call__(self, z: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> GeneratorAttackResult:
        check_latent(z)
        result = super().__call__(z, latent_labels(self.loss, z, y, self.generator), target)
        assert isinstance(result, GeneratorAttackResult)
        return result

    def run(self, x, y, target, clean_logits, generator) -> GeneratorAttackResult:
        with torch.no_grad():
            batches = list(zip(x.split(self.batch_size), y.split(self.batch_size), strict=True))
            x_adv = torch.cat([self.generator(zb, yb) for zb, yb in batches])
            x_ref = None if self.reference is None else torch.cat([self.reference(zb, yb) for zb, yb in batches])
            oracle_pred = None if self.oracle is None else torch.cat(
                [self.oracle(xb).argmax(1) for xb in x_adv.split(self.batch_size)])
        ones = torch.ones(len(x), dtype=torch.long, device=x.device)
        return GeneratorAttackResult(
            x_adv, self.loss.success(clean_logits, y, target), ones, ones.clone(), clean_logits, clean_logits, target,
            z=x.detach(), y=y, x=x_ref,
            valid=None if oracle_pred is None else oracle_pred == y, oracle_pred=oracle_pred)


def generator_attack_summary(result: GeneratorAttackResult) -> dict[str, float]:
    """Success, validity, valid adversarial rate and, with a reference generator, mean pixel distances."""
    summary = {"n": len(result), "success": result.success.float().mean().item(), **validity_summary(result)}
    return summary if result.x is None else {**summary, **distance_summary("pixel", result.x_adv - result.x)}


def advgan_summary(result: AttackResult, x: torch.Tensor, y: torch.Tensor, oracle: nn.Module | None = None
                   ) -> dict[str, float]:
    """Success (all samples, and among clean-correct ones), the perturbation's size and, with an oracle,
    validity: the share of ``x_adv`` that the oracle still labels ``y``, and of valid successes."""
    clean_ok = result.clean_logits.argmax(1) == y
    delta = (result.x_adv - x).flatten(1)
    summary: dict[str, float] = {
        "n": len(x), "clean_acc": clean_ok.float().mean().item(), "success": result.success_rate,
        "success_clean_correct": result.success[clean_ok].float().mean().item() if clean_ok.any() else 0.0,
        "linf_max": delta.abs().amax().item(), "l2_mean": delta.norm(dim=1).mean().item(),
        "queries_per_sample": result.queries.float().mean().item(),
    }
    if oracle is not None:
        with torch.no_grad():
            valid = oracle(result.x_adv).argmax(1) == y
        summary["validity"] = valid.float().mean().item()
        summary["valid_adversarial"] = (valid & result.success).float().mean().item()
    return summary
