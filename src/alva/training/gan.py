"""Train a WGAN-GP (Gulrajani et al. 2017) or an AC-WGAN-GP (with the auxiliary classifier of Odena et al.
2017, "Conditional Image Synthesis with Auxiliary Classifier GANs") on in-memory images.

Like :func:`alva.training.loop.fit`: seeded per ``(seed, epoch)``, a checkpoint after every epoch
(generator, critic, both optimisers), ``resume=True`` ends with the same weights as an uninterrupted run,
metrics in ``out/metrics.jsonl`` and TensorBoard, and a grid of samples after every epoch.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from alva.data.loaders import make_loader
from alva.models.gan import ACCritic, ACGenerator, Generator
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes
from alva.tracking.logger import MetricsLogger
from alva.training.loop import TrainingDiverged, epoch_seed

CHECKPOINT = "checkpoint.safetensors"


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
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP's penalty ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates ``x_hat`` of real and fake
    (Gulrajani et al. 2017, eq. 3). Draws the mixing weights from the global torch generator."""
    eps = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score, _ = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def sample(generator: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``G(z, y)`` for a conditional generator, ``G(z)`` otherwise."""
    return generator(z, labels) if labels is not None else generator(z)


def critic_loss(generator: nn.Module, critic: nn.Module, real: torch.Tensor, labels: torch.Tensor,
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
    if settings.conditional:
        aux = F.cross_entropy(logits_real, labels) + settings.aux_fake_weight * F.cross_entropy(logits_fake,
                                                                                                fake_labels)
        loss = loss + settings.aux_weight * aux
        metrics["aux_loss"] = aux.item()
        metrics["aux_acc_real"] = (logits_real.argmax(1) == labels).float().mean().item()
        metrics["aux_acc_fake"] = (logits_fake.argmax(1) == fake_labels).float().mean().item()
    metrics["critic_loss"] = loss.item()
    return loss, metrics


def generator_loss(generator: nn.Module, critic: nn.Module, n: int, settings: GanSettings,
                   device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    """``-D(G(z))``, plus, for AC-WGAN-GP, the auxiliary cross-entropy of ``G(z, y)`` against ``y``."""
    z = torch.randn(n, *generator.latent_shape, device=device)
    labels = torch.randint(0, generator.num_classes, (n,), device=device) if settings.conditional else None
    score, logits = critic(sample(generator, z, labels))
    loss = -score.mean()
    if settings.conditional:
        loss = loss + settings.aux_weight * F.cross_entropy(logits, labels)
    return loss, {"generator_loss": loss.item()}


def sample_grid(generator: nn.Module, seed: int, conditional: bool, rows: int = 10, cols: int = 10) -> torch.Tensor:
    """A ``rows x cols`` grid of samples from fixed noise; for a conditional generator row ``r`` is class ``r``."""
    device = next(generator.parameters()).device
    z = torch.randn(rows * cols, *generator.latent_shape, generator=torch.Generator().manual_seed(seed)).to(device)
    labels = torch.arange(rows, device=device).repeat_interleave(cols) % generator.num_classes if conditional else None
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        images = sample(generator, z, labels).cpu()
    generator.train(was_training)
    _, c, h, w = images.shape
    return images.view(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def grid_png(grid: torch.Tensor, title: str = "") -> bytes:
    """A grey-scale PNG of ``grid`` (``C x H x W`` in [0, 1]) drawn with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.95))
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def make_models(conditional: bool, latent_dim: int = 64, num_classes: int = 10) -> tuple[nn.Module, ACCritic]:
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


def train_gan(generator: nn.Module, critic: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor],
              settings: GanSettings, *, out: str | Path | None = None, resume: bool = False,
              device: str | torch.device = "cpu", progress: bool = True,
              monitor: Callable[[nn.Module], dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train ``generator`` and ``critic`` in place with WGAN-GP (AC-WGAN-GP when ``settings.conditional``).

    One critic step per batch; one generator step every ``n_critic`` batches. Returns one record per epoch
    run. With ``out``: ``checkpoint.safetensors`` after every epoch, ``metrics.jsonl`` + ``tb/``, and
    ``samples/epoch_NNN.png`` (10 x 10, row = class for a conditional generator). ``monitor(generator)``, when
    given, runs after every epoch (generator in eval mode) and its figures go into that epoch's record.
    """
    device = torch.device(device)
    x_train, y_train = train_data
    generator.to(device)
    critic.to(device)
    opt_g, opt_d = make_optimizers(generator, critic, settings)
    checkpoint = Path(out) / CHECKPOINT if out is not None else None
    start_epoch, elapsed = 0, 0.0
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs out=, the folder of the run to continue")
        if checkpoint.exists():
            start_epoch, elapsed = _restore(checkpoint, generator, critic, opt_g, opt_d, settings)
    logger = MetricsLogger(out, resume_step=start_epoch + 1 if resume else None) if out is not None else None
    history: list[dict[str, Any]] = []
    try:
        for epoch in range(start_epoch, settings.epochs):
            torch.manual_seed(epoch_seed(settings.seed, epoch))
            started = time.perf_counter()
            stats = _train_epoch(generator, critic, opt_g, opt_d, x_train, y_train, settings, epoch, device,
                                 progress)
            took = time.perf_counter() - started
            elapsed += took
            record = {"epoch": epoch + 1, "train": stats, "time_s": round(took, 3)}
            if monitor is not None:
                generator.eval()
                record["monitor"] = monitor(generator)
            history.append(record)
            if out is not None:
                grid = sample_grid(generator, settings.seed, settings.conditional)
                atomic_write_bytes(Path(out) / "samples" / f"epoch_{epoch + 1:03d}.png",
                                   grid_png(grid, f"epoch {epoch + 1}"))
                logger.log(epoch + 1, record)
                save_checkpoint(checkpoint, {
                    "epochs_done": epoch + 1, "train_time_s": elapsed, "settings": asdict(settings),
                    "generator": generator.state_dict(), "critic": critic.state_dict(),
                    "optimizer_generator": opt_g.state_dict(), "optimizer_critic": opt_d.state_dict(),
                })
    finally:
        if logger is not None:
            logger.close()
    generator.train_time_s = elapsed
    return history


def _restore(checkpoint: Path, generator, critic, opt_g, opt_d, settings: GanSettings) -> tuple[int, float]:
    state = load_checkpoint(checkpoint)
    saved = state["settings"]
    check_same_settings(checkpoint, saved, asdict(settings), may_change=("epochs",))
    generator.load_state_dict(state["generator"])
    critic.load_state_dict(state["critic"])
    opt_g.load_state_dict(state["optimizer_generator"])
    opt_d.load_state_dict(state["optimizer_critic"])
    return int(state["epochs_done"]), float(state.get("train_time_s", 0.0))


def _train_epoch(generator, critic, opt_g, opt_d, x_train, y_train, settings: GanSettings, epoch: int, device,
                 progress: bool) -> dict[str, float]:
    generator.train()
    critic.train()
    loader = make_loader(x_train, y_train, settings.batch_size, shuffle=True, seed=settings.seed, epoch=epoch,
                         drop_last=True)
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not progress, leave=False,
               dynamic_ncols=True)
    for i, (xb, yb) in enumerate(bar):
        xb, yb = xb.to(device), yb.to(device)
        loss_d, metrics = critic_loss(generator, critic, xb, yb, settings)
        _check(loss_d, "critic", epoch, i)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        if (i + 1) % settings.n_critic == 0:
            critic.requires_grad_(False)
            loss_g, g_metrics = generator_loss(generator, critic, len(xb), settings, device)
            _check(loss_g, "generator", epoch, i)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            critic.requires_grad_(True)
            metrics.update(g_metrics)
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + 1
        bar.set_postfix({k: f"{totals[k] / counts[k]:.3f}" for k in ("wasserstein", "generator_loss")
                         if k in totals}, refresh=False)
    return {k: totals[k] / counts[k] for k in totals}


def _check(loss: torch.Tensor, which: str, epoch: int, batch: int) -> None:
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"{which} loss is {loss.item()} at epoch {epoch + 1}, batch {batch + 1}: lower the lr")
