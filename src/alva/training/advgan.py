"""Train an AdvGAN perturbation generator (Xiao et al. 2018, "Generating Adversarial Examples with Adversarial
Networks") against a fixed target classifier.

The generator ``g`` gives ``x_adv = clip(x + eps * tanh(g(x)))`` (see
:class:`alva.attacks.generator_attacks.AdvGANAttack`); it minimises

    L = L_adv + gan_weight * L_GAN + hinge_weight * max(0, ||x_adv - x||_2 - hinge_bound)

with ``L_adv`` the Carlini-Wagner margin of the target model clamped at ``-kappa`` (untargeted: true logit minus
best other; targeted: best other minus target logit, targets drawn at random per batch), and ``L_GAN`` the
least-squares GAN loss of a small discriminator that tells clean images from adversarial ones (the paper's
choice). Like :func:`alva.training.gan.train_gan`: seeded per ``(seed, epoch)``, a checkpoint after every epoch,
``resume=True`` ends where an uninterrupted run ends, metrics in ``metrics.jsonl`` and TensorBoard, and a grid of
adversarial images after every epoch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alva.attacks.base import attack_mode
from alva.attacks.generator_attacks import PerturbationGenerator, bounded_perturbation, save_perturbation_generator
from alva.data.loaders import make_loader
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes
from alva.tracking.logger import MetricsLogger
from alva.training.gan import grid_png
from alva.training.loop import TrainingDiverged, epoch_seed

CHECKPOINT = "checkpoint.safetensors"


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
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
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
    """Per-sample C&W loss to minimise: ``max(own - best other, -kappa)`` (untargeted) or
    ``max(best other - target, -kappa)`` (targeted)."""
    label = y if target is None else target
    own = logits.gather(1, label[:, None]).squeeze(1)
    others = logits.scatter(1, label[:, None], float("-inf")).amax(1)
    gap = own - others if target is None else others - own
    return gap.clamp(min=-kappa)


def random_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A target class other than ``y`` per sample, from the global generator."""
    return (y + torch.randint(1, num_classes, y.shape, device=y.device)) % num_classes


def train_advgan(target_model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], eps: float,
                 settings: AdvGANSettings | None = None, *, out: str | Path | None = None, resume: bool = False,
                 device: str | torch.device = "cpu", progress: bool = True, num_classes: int = 10,
                 bounds: tuple[float, float] = (0.0, 1.0), card: dict[str, Any] | None = None
                 ) -> tuple[PerturbationGenerator, list[dict[str, Any]]]:
    """Train a perturbation generator against ``target_model`` (kept frozen, in eval mode) on ``data``.

    Returns the generator (eval mode, with ``generator.card`` holding eps and the settings) and one record per
    epoch run. With ``out``: ``checkpoint.safetensors`` after every epoch, ``metrics.jsonl`` + ``tb/``,
    ``samples/epoch_NNN.png`` (adversarial versions of 100 fixed training images) and, at the end,
    ``generator.safetensors`` + ``generator.json`` (load with
    :func:`~alva.attacks.generator_attacks.load_perturbation_generator`).
    """
    settings = settings or AdvGANSettings()
    if not 0 < eps < float("inf"):
        raise ValueError(f"eps must be > 0 and finite, got {eps}")
    device = torch.device(device)
    x_train, y_train = data
    torch.manual_seed(settings.seed)
    channels = x_train.shape[1]
    generator = PerturbationGenerator(channels, settings.width, num_classes if settings.targeted else 0).to(device)
    discriminator = Discriminator(channels, settings.width).to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=(0.5, 0.999))
    recorded = {**asdict(settings), "eps": float(eps)}
    checkpoint = Path(out) / CHECKPOINT if out is not None else None
    start_epoch, elapsed = 0, 0.0
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs out=, the folder of the run to continue")
        if checkpoint.exists():
            start_epoch, elapsed = _restore(checkpoint, generator, discriminator, opt_g, opt_d, recorded)
    logger = MetricsLogger(out, resume_step=start_epoch + 1 if resume else None) if out is not None else None
    shown = x_train[:100].to(device)
    shown_targets = random_targets(y_train[:100].to(device), num_classes) if settings.targeted else None
    history: list[dict[str, Any]] = []
    try:
        with attack_mode(target_model):
            for epoch in range(start_epoch, settings.epochs):
                torch.manual_seed(epoch_seed(settings.seed, epoch))
                started = time.perf_counter()
                stats = _train_epoch(generator, discriminator, target_model, opt_g, opt_d, x_train, y_train, eps,
                                     settings, epoch, device, progress, num_classes, bounds)
                took = time.perf_counter() - started
                elapsed += took
                record = {"epoch": epoch + 1, "train": stats, "time_s": round(took, 3)}
                history.append(record)
                if out is not None:
                    generator.eval()
                    with torch.no_grad():
                        adv = bounded_perturbation(generator, shown, eps, bounds, shown_targets).cpu()
                    grid = adv.view(10, 10, *adv.shape[1:]).permute(2, 0, 3, 1, 4).reshape(
                        adv.shape[1], 10 * adv.shape[2], 10 * adv.shape[3])
                    atomic_write_bytes(Path(out) / "samples" / f"epoch_{epoch + 1:03d}.png",
                                       grid_png(grid, f"AdvGAN eps {eps}, epoch {epoch + 1}"))
                    logger.log(epoch + 1, record)
                    save_checkpoint(checkpoint, {
                        "epochs_done": epoch + 1, "train_time_s": elapsed, "settings": recorded,
                        "generator": generator.state_dict(), "discriminator": discriminator.state_dict(),
                        "optimizer_generator": opt_g.state_dict(), "optimizer_discriminator": opt_d.state_dict(),
                    })
    finally:
        if logger is not None:
            logger.close()
    generator.eval()
    generator.card = {"eps": float(eps), "settings": asdict(settings), "train_time_s": round(elapsed, 1),
                      "train_size": len(x_train), **(card or {})}
    if out is not None:
        save_perturbation_generator(generator.cpu(), generator.card, Path(out) / "generator.safetensors")
        generator.to(device)
    return generator, history


def _restore(checkpoint: Path, generator, discriminator, opt_g, opt_d, recorded: dict[str, Any]) -> tuple[int, float]:
    state = load_checkpoint(checkpoint)
    saved = state["settings"]
    check_same_settings(checkpoint, saved, recorded, may_change=("epochs",))
    generator.load_state_dict(state["generator"])
    discriminator.load_state_dict(state["discriminator"])
    opt_g.load_state_dict(state["optimizer_generator"])
    opt_d.load_state_dict(state["optimizer_discriminator"])
    return int(state["epochs_done"]), float(state.get("train_time_s", 0.0))


def _train_epoch(generator, discriminator, target_model, opt_g, opt_d, x_train, y_train, eps, settings, epoch,
                 device, progress, num_classes, bounds) -> dict[str, float]:
    generator.train()
    discriminator.train()
    loader = make_loader(x_train, y_train, settings.batch_size, shuffle=True, seed=settings.seed, epoch=epoch,
                         drop_last=True)
    totals: dict[str, float] = {}
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not progress, leave=False,
               dynamic_ncols=True)
    batches = 0
    for i, (xb, yb) in enumerate(bar):
        xb, yb = xb.to(device), yb.to(device)
        target = random_targets(yb, num_classes) if settings.targeted else None
        x_adv = bounded_perturbation(generator, xb, eps, bounds, target)
        # discriminator: least squares, clean -> 1, adversarial -> 0
        loss_d = ((discriminator(xb) - 1) ** 2).mean() + (discriminator(x_adv.detach()) ** 2).mean()
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator
        discriminator.requires_grad_(False)
        logits = target_model(x_adv)
        loss_adv = adversarial_margin(logits, yb, target, settings.kappa).mean()
        loss_gan = ((discriminator(x_adv) - 1) ** 2).mean()
        l2 = (x_adv - xb).flatten(1).norm(dim=1)
        loss_hinge = (l2 - settings.hinge_bound).clamp(min=0).mean()
        loss_g = loss_adv + settings.gan_weight * loss_gan + settings.hinge_weight * loss_hinge
        if not torch.isfinite(loss_g) or not torch.isfinite(loss_d):
            raise TrainingDiverged(f"loss is not finite at epoch {epoch + 1}, batch {i + 1}: lower the lr")
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        discriminator.requires_grad_(True)
        with torch.no_grad():
            label = yb if target is None else target
            hit = logits.argmax(1) == label
            success = (hit if target is not None else ~hit).float().mean().item()
        metrics = {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_adv": loss_adv.item(),
                   "loss_gan": loss_gan.item(), "l2": l2.mean().item(), "success": success}
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
        batches += 1
        bar.set_postfix({"success": f"{totals['success'] / batches:.3f}"}, refresh=False)
    return {k: v / max(batches, 1) for k, v in totals.items()}
