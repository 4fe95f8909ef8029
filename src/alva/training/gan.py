"""Train a WGAN-GP (Gulrajani et al. 2017) or an AC-WGAN-GP (with the auxiliary classifier of Odena et al.
2017, "Conditional Image Synthesis with Auxiliary Classifier GANs") on in-memory images.

The training is :class:`WassersteinGAN`, an objective of :func:`alva.training.loop.fit` that owns the critic and
both optimisers (all four in the checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.base import attack_mode
from alva.models.gan import ACCritic, ACGenerator, Generator
from alva.report.training_figures import tile
from alva.training.loop import fit
from alva.training.objectives import ManualObjective, check_finite
from alva.training.settings import check_run, loop_settings


@dataclass
class GanSettings:
    """How to train: everything here is recorded in the checkpoint and must match on resume."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    n_critic: int = 5
    gp_lambda: float = 10.0
    aux_weight: float = 1.0
    # Odena et al. also train the critic's classifier on generated images (weight 1). With a WGAN critic that head
    # learns to read the generator's own signature (it labels fakes 99.8% right while an independent classifier
    # agrees on 89%), so by default it learns from real images only and the generator must draw real digits.
    aux_fake_weight: float = 0.0
    conditional: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_run(self.epochs, self.batch_size, self.lr, min_batch_size=2)
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates ``x_hat`` of real and fake
    (Gulrajani et al. 2017, eq. 3). Draws the mixing weights from the global torch generator."""
    eps = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score, _ = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def sample(generator: Generator | ACGenerator, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``G(z, y)`` for a conditional generator, ``G(z)`` otherwise."""
    return generator(z, labels) if labels is not None else generator(z)


def critic_loss(generator: Generator | ACGenerator, critic: nn.Module, real: torch.Tensor, labels: torch.Tensor,
                settings: GanSettings) -> tuple[torch.Tensor, dict[str, float]]:
    """``D(fake) - D(real) + lambda * GP``, plus, for AC-WGAN-GP, the auxiliary cross-entropy on real images
    (their labels) and, weighted by ``aux_fake_weight``, on generated ones (their conditioning labels)."""
    n = len(real)
    z = torch.randn(n, *generator.latent_shape, device=real.device)
    fake_labels = torch.randint(0, generator.num_classes, (n,), device=real.device) if settings.conditional else None
    with torch.no_grad():
        fake = sample(generator, z, fake_labels)
    score_real, logits_real = critic(real)
    score_fake, logits_fake = critic(fake)
    wasserstein = score_real.mean() - score_fake.mean()
    penalty = gradient_penalty(critic, real, fake)
    loss = -wasserstein + settings.gp_lambda * penalty
    metrics = {"wasserstein": wasserstein.item(), "gp": penalty.item()}
    if fake_labels is not None:  # conditional
        aux = F.cross_entropy(logits_real, labels) + settings.aux_fake_weight * F.cross_entropy(logits_fake,
                                                                                                fake_labels)
        loss = loss + settings.aux_weight * aux
        metrics["aux_loss"] = aux.item()
        metrics["aux_acc_real"] = (logits_real.argmax(1) == labels).float().mean().item()
        metrics["aux_acc_fake"] = (logits_fake.argmax(1) == fake_labels).float().mean().item()
    metrics["critic_loss"] = loss.item()
    return loss, metrics


def generator_loss(generator: Generator | ACGenerator, critic: nn.Module, n: int, settings: GanSettings,
                   device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """``-D(G(z))``, plus, for AC-WGAN-GP, the auxiliary cross-entropy of ``G(z, y)`` against ``y``."""
    z = torch.randn(n, *generator.latent_shape, device=device)
    labels = torch.randint(0, generator.num_classes, (n,), device=device) if settings.conditional else None
    score, logits = critic(sample(generator, z, labels))
    loss = -score.mean()
    if labels is not None:  # conditional
        loss = loss + settings.aux_weight * F.cross_entropy(logits, labels)
    return loss, {"generator_loss": loss.item()}


def sample_grid(generator: Generator | ACGenerator, seed: int, conditional: bool, rows: int = 10, cols: int = 10
                ) -> torch.Tensor:
    """A ``rows x cols`` grid of samples from fixed noise; for a conditional generator row ``r`` is class ``r``."""
    device = next(generator.parameters()).device
    z = torch.randn(rows * cols, *generator.latent_shape, generator=torch.Generator().manual_seed(seed)).to(device)
    labels = torch.arange(rows, device=device).repeat_interleave(cols) % generator.num_classes if conditional else None
    with attack_mode(generator), torch.no_grad():
        return tile(sample(generator, z, labels).cpu(), rows, cols)


def make_models(conditional: bool, latent_dim: int = 64, num_classes: int = 10
                ) -> tuple[Generator | ACGenerator, ACCritic]:
    """A fresh generator (conditional or not) and critic."""
    generator = ACGenerator(latent_dim, num_classes) if conditional else Generator(latent_dim)
    if not conditional:
        generator.num_classes = num_classes
    return generator, ACCritic(num_classes)


def make_optimizers(generator: nn.Module, critic: nn.Module, settings: GanSettings
                    ) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    betas = (settings.beta1, settings.beta2)
    return (torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=betas),
            torch.optim.Adam(critic.parameters(), lr=settings.lr, betas=betas))


class WassersteinGAN(ManualObjective):
    """WGAN-GP (AC-WGAN-GP when ``settings.conditional``) as an objective of :func:`~alva.training.loop.fit`,
    whose model is the generator: one critic step per batch, one generator step every ``n_critic`` batches.

    ``monitor(generator)``, when given, runs after every epoch (generator in eval mode); its figures go into the
    epoch's record under ``"monitor"``.
    """

    may_change = ("epochs",)
    drop_last = True

    def __init__(self, critic: nn.Module, settings: GanSettings,
                 monitor: Callable[[nn.Module], dict[str, float]] | None = None) -> None:
        self.critic, self.settings, self.monitor = critic, settings, monitor
        self.name = "ac-wgan-gp" if settings.conditional else "wgan-gp"

    def setup(self, model, train_data, settings, device) -> None:
        self.generator = model
        self.device = device
        self.critic.to(device)
        self.opt_g, self.opt_d = make_optimizers(model, self.critic, self.settings)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch
        self.generator.train()
        self.critic.train()

    def training_step(self, x, y, batch):
        loss_d, metrics = critic_loss(self.generator, self.critic, x, y, self.settings)
        check_finite(loss_d, "critic loss", self.epoch, batch)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        if (batch + 1) % self.settings.n_critic == 0:
            self.critic.requires_grad_(False)
            loss_g, g_metrics = generator_loss(self.generator, self.critic, len(x), self.settings, self.device)
            check_finite(loss_g, "generator loss", self.epoch, batch)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            self.critic.requires_grad_(True)
            metrics.update(g_metrics)
        return metrics, 1.0

    def end_epoch(self, model, epoch):
        if self.monitor is None:
            return {}
        model.eval()
        return {"monitor": self.monitor(model)}

    def sample_grid(self, model, epoch):
        return sample_grid(model, self.settings.seed, self.settings.conditional), f"epoch {epoch + 1}"

    def parts(self) -> dict[str, Any]:
        return {"generator": self.generator, "critic": self.critic, "optimizer_generator": self.opt_g,
                "optimizer_critic": self.opt_d}

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in asdict(self.settings).items() if k != "epochs"}}


def train_gan(generator: Generator | ACGenerator, critic: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor],
              settings: GanSettings, *, out: str | Path | None = None, resume: bool = False,
              device: str | torch.device = "cpu", progress: bool = True,
              monitor: Callable[[nn.Module], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train ``generator`` and ``critic`` in place with WGAN-GP (AC-WGAN-GP when ``settings.conditional``).

    :func:`~alva.training.loop.fit` with :class:`WassersteinGAN`. Returns one record per epoch run. With ``out``:
    ``checkpoint.safetensors`` after every epoch, ``metrics.jsonl`` + ``tb/``, and ``samples/epoch_NNN.png``
    (10 x 10, row = class for a conditional generator). Sets ``generator.train_time_s`` (all runs of a resumed
    training).
    """
    objective = WassersteinGAN(critic, settings, monitor)
    history = fit(generator, train_data, loop_settings(settings), objective=objective, out=out, resume=resume,
                  device=device, progress=progress)
    generator.train_time_s = objective.train_time_s
    return history
