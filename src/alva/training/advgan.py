"""Train an AdvGAN perturbation generator (Xiao et al. 2018, "Generating Adversarial Examples with Adversarial
Networks") against a fixed target classifier.

The generator ``g`` gives ``x_adv = clip(x + eps * tanh(g(x)))`` (see
:class:`alva.attacks.generator_attacks.AdvGANAttack`); it minimises

    L = L_adv + gan_weight * L_GAN + hinge_weight * max(0, ||x_adv - x||_2 - hinge_bound)

with ``L_adv`` the Carlini-Wagner margin of the target model clamped at ``-kappa`` (:func:`adversarial_margin`;
targets drawn at random per batch when targeted), and ``L_GAN`` the least-squares GAN loss of a small
discriminator that tells clean images from adversarial ones (the paper's choice). The training is
:class:`AdvGANObjective`, an objective of :func:`alva.training.loop.fit` that owns the discriminator and both
optimisers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva.attacks.base import attack_mode
from alva.attacks.generator_attacks import PerturbationGenerator, bounded_perturbation, save_perturbation_generator
from alva.attacks.keyed import generator_uniform
from alva.attacks.losses import ClassLoss, is_success, margin
from alva.models import model_io
from alva.report.training_figures import tile
from alva.training.loop import fit
from alva.training.objectives import ManualObjective, check_finite
from alva.training.settings import check_run, loop_settings


@dataclass
class AdvGANSettings:
    """How to train: everything here (and eps) is recorded in the checkpoint and must match on resume."""

    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    gan_weight: float = 0.1
    hinge_weight: float = 0.05
    hinge_bound: float = 3.0
    kappa: float = 2.0
    targeted: bool = False
    width: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_run(self.epochs, self.batch_size, self.lr, min_batch_size=2)
        if min(self.gan_weight, self.hinge_weight, self.hinge_bound, self.kappa) < 0:
            raise ValueError("gan_weight, hinge_weight, hinge_bound and kappa must be >= 0")


class Discriminator(nn.Module):
    """AdvGAN's discriminator, small: three stride-2 convolutions to one realness score per image."""

    def __init__(self, channels: int = 1, width: int = 32) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.InstanceNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1), nn.InstanceNorm2d(4 * width), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def adversarial_margin(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, kappa: float
                       ) -> torch.Tensor:
    """Per-sample C&W loss to minimise: minus the Carlini-Wagner margin (:func:`alva.attacks.losses.margin`),
    clamped at ``-kappa``: ``max(own - best other, -kappa)`` (untargeted) or ``max(best other - target, -kappa)``
    (targeted)."""
    return margin(logits, y if target is None else target, target is not None).neg().clamp(min=-kappa)


def random_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A target class other than ``y`` per sample, from the global generator (the attacks' ``"random"`` rule)."""
    # The rule reads only the number of classes from the logits: a zero-stride stand-in of that shape.
    shape_only = torch.zeros((), device=y.device).expand(len(y), num_classes)
    return ClassLoss(margin).pick_targets("random", y, shape_only, generator_uniform(len(y), None, y.device))


class AdvGANObjective(ManualObjective):
    """AdvGAN's losses as an objective of :func:`~alva.training.loop.fit`, whose model is the perturbation
    generator: per batch one least-squares step of the discriminator (clean -> 1, adversarial -> 0) and one step of
    the generator on ``L_adv + gan_weight * L_GAN + hinge_weight * L_hinge`` against the frozen ``target_model``.
    ``shown`` (and ``shown_targets``) are the 100 images whose adversarial versions make the grid of every epoch.
    """

    name = "advgan"
    may_change = ("epochs",)
    drop_last = True

    def __init__(self, target_model: nn.Module, discriminator: nn.Module, eps: float, settings: AdvGANSettings, *,
                 num_classes: int = 10, bounds: tuple[float, float] = (0.0, 1.0), shown: torch.Tensor | None = None,
                 shown_targets: torch.Tensor | None = None) -> None:
        self.target_model, self.discriminator, self.eps, self.settings = target_model, discriminator, eps, settings
        self.num_classes, self.bounds = num_classes, bounds
        self.shown, self.shown_targets = shown, shown_targets

    def setup(self, model, train_data, settings, device) -> None:
        self.generator = model
        self.discriminator.to(device)
        self.opt_g = torch.optim.Adam(model.parameters(), lr=self.settings.lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=self.settings.lr, betas=(0.5, 0.999))

    def running(self):
        return attack_mode(self.target_model)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch
        self.generator.train()
        self.discriminator.train()

    def training_step(self, x, y, batch):
        s, discriminator = self.settings, self.discriminator
        target = random_targets(y, self.num_classes) if s.targeted else None
        x_adv = bounded_perturbation(self.generator, x, self.eps, self.bounds, target)
        loss_d = ((discriminator(x) - 1) ** 2).mean() + (discriminator(x_adv.detach()) ** 2).mean()
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        discriminator.requires_grad_(False)
        logits = self.target_model(x_adv)
        loss_adv = adversarial_margin(logits, y, target, s.kappa).mean()
        loss_gan = ((discriminator(x_adv) - 1) ** 2).mean()
        l2 = (x_adv - x).flatten(1).norm(dim=1)
        loss_hinge = (l2 - s.hinge_bound).clamp(min=0).mean()
        loss_g = loss_adv + s.gan_weight * loss_gan + s.hinge_weight * loss_hinge
        check_finite(loss_d + loss_g, "loss", self.epoch, batch)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        discriminator.requires_grad_(True)
        with torch.no_grad():
            success = is_success(logits, y if target is None else target, target is not None).float().mean().item()
        return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_adv": loss_adv.item(),
                "loss_gan": loss_gan.item(), "l2": l2.mean().item(), "success": success}, 1.0

    def sample_grid(self, model, epoch):
        if self.shown is None:
            return None
        model.eval()
        with torch.no_grad():
            adv = bounded_perturbation(model, self.shown, self.eps, self.bounds, self.shown_targets).cpu()
        side = math.isqrt(len(adv))  # a square grid of the shown images (10 x 10 from 100)
        return tile(adv[:side * side], side, side), f"AdvGAN eps {self.eps}, epoch {epoch + 1}"

    def parts(self) -> dict[str, Any]:
        return {"generator": self.generator, "discriminator": self.discriminator, "optimizer_generator": self.opt_g,
                "optimizer_discriminator": self.opt_d}

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in asdict(self.settings).items() if k != "epochs"},
                "eps": float(self.eps)}


def train_advgan(target_model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], eps: float,
                 settings: AdvGANSettings | None = None, *, out: str | Path | None = None, resume: bool = False,
                 device: str | torch.device = "cpu", progress: bool = True, num_classes: int | None = None,
                 bounds: tuple[float, float] = (0.0, 1.0), card: dict[str, Any] | None = None
                 ) -> tuple[PerturbationGenerator, list[dict[str, Any]]]:
    """Train a perturbation generator against ``target_model`` (kept frozen, in eval mode) on ``data``.

    Returns the generator (eval mode, with ``generator.card`` holding eps and the settings) and one record per
    epoch run. With ``out``: ``checkpoint.safetensors`` after every epoch, ``metrics.jsonl`` + ``tb/``,
    ``samples/epoch_NNN.png`` (adversarial versions of 100 fixed training images) and, at the end,
    ``generator.safetensors`` + ``generator.json`` (load with
    :func:`~alva.attacks.generator_attacks.load_perturbation_generator`). ``num_classes``: the target model's
    classes (default: as its card says, else its outputs on the training images' shape).
    """
    settings = settings or AdvGANSettings()
    if not 0 < eps < float("inf"):
        raise ValueError(f"eps must be > 0 and finite, got {eps}")
    device = torch.device(device)
    x_train, y_train = data
    if num_classes is None:
        num_classes = model_io(target_model).num_classes or model_io(target_model, x_train.shape[1:]).num_classes
    num_classes = int(num_classes or 0)
    torch.manual_seed(settings.seed)
    channels = x_train.shape[1]
    generator = PerturbationGenerator(channels, settings.width, num_classes if settings.targeted else 0)
    discriminator = Discriminator(channels, settings.width)
    shown = x_train[:100].to(device)
    shown_targets = random_targets(y_train[:100].to(device), num_classes) if settings.targeted else None
    objective = AdvGANObjective(target_model, discriminator, eps, settings, num_classes=num_classes, bounds=bounds,
                                shown=shown, shown_targets=shown_targets)
    history = fit(generator, data, loop_settings(settings), objective=objective, out=out, resume=resume, device=device,
                  progress=progress)
    generator.eval()
    # The spec's ``num_classes`` counts the target classes the generator takes as input (0: untargeted); the
    # card also says how many classes the attacked model has.
    generator.card = {"eps": float(eps), "settings": asdict(settings), "train_time_s": round(objective.train_time_s, 1),
                      "train_size": len(x_train), "target_model_classes": int(num_classes), **(card or {})}
    if out is not None:
        save_perturbation_generator(generator.cpu(), generator.card, Path(out) / "generator.safetensors")
        generator.to(device)
    return generator, history
