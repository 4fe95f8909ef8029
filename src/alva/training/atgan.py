"""Adversarial generators for unrestricted adversarial examples: the seed's approaches 2 and 1.

- :func:`finetune_atgan` (approach 2, after AT-GAN, Wang et al. 2019): start from a copy of a trained
  conditional generator ``G`` (``mnist/acwgan-gp``) and fine-tune it into ``G_adv`` so that the target classifier
  misreads ``G_adv(z, y)`` while ``G_adv(z, y)`` stays close to ``G(z, y)``::

      L = L_adv(C(G_adv(z, y)), y) + dist_weight * D(G_adv(z, y), G(z, y)) [+ critic_weight * critic terms]

  ``distance="l2"``: AT-GAN's squared Euclidean distance per image (mean over the batch);
  ``distance="frechet"``: the seed's choice, the Frechet distance between Gaussians fitted to the batch's features
  of a reference classifier (``mnist/cnn-small-fast`` by default), a distance between *distributions*, so it
  does not tie ``G_adv(z, y)`` to ``G(z, y)`` image by image.
- :func:`approach1`: a fresh (untrained) generator trained against a frozen pre-trained critic (Wasserstein score
  and auxiliary classifier) and the target. The seed reports that the generator never catches up and draws
  noise; this reproduces the setup so the failure can be measured.

Both are seeded per ``(seed, epoch)``, write a checkpoint after every epoch (``resume=True`` goes on), log to
``metrics.jsonl`` + TensorBoard and save a 10 x 10 grid (row = class) after every epoch.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from alva.attacks.base import attack_mode
from alva.models.gan import ACCritic, ACGenerator, save_generator
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_bytes
from alva.tracking.logger import MetricsLogger
from alva.training.advgan import adversarial_margin
from alva.training.gan import grid_png, sample_grid
from alva.training.loop import TrainingDiverged, epoch_seed

CHECKPOINT = "checkpoint.safetensors"
DISTANCES = ("l2", "frechet")


@dataclass
class ATGANSettings:
    """How to train: everything here is recorded in the checkpoint and must match on resume.

    One epoch is ``steps_per_epoch`` generator steps on fresh ``(z, y)`` draws (no data set is needed).
    """

    epochs: int = 2
    steps_per_epoch: int = 100
    batch_size: int = 64
    lr: float = 1e-4
    distance: str = "l2"
    dist_weight: float = 0.05
    kappa: float = 2.0
    critic_weight: float = 0.0
    aux_weight: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1:
            raise ValueError("epochs and steps_per_epoch must be >= 1")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {DISTANCES}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")


def features(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Differentiable penultimate features of a zoo classifier (``Normalized`` around an ``nn.Sequential``)."""
    net = getattr(classifier, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError("the Frechet distance needs a zoo classifier: Normalized around an nn.Sequential")
    return net[:-1]((x - classifier.mean) / classifier.std).flatten(1)


def frechet_loss(feats_a: torch.Tensor, feats_b: torch.Tensor) -> torch.Tensor:
    """Differentiable Frechet distance between Gaussians fitted to two ``N x D`` feature batches.

    With centred, scaled features ``A``, ``B`` (``S_a = A^T A``), ``tr((S_a^1/2 S_b S_a^1/2)^1/2)`` is the nuclear
    norm of ``A B^T`` (an ``N x N`` matrix), whose gradient needs no matrix square root.
    """
    a = (feats_a - feats_a.mean(0)) / (len(feats_a) - 1) ** 0.5
    b = (feats_b - feats_b.mean(0)) / (len(feats_b) - 1) ** 0.5
    cross = torch.linalg.svdvals(a @ b.T).sum()
    mean = (feats_a.mean(0) - feats_b.mean(0)).pow(2).sum()
    return mean + a.pow(2).sum() + b.pow(2).sum() - 2 * cross


def distance_loss(distance: str, x_adv: torch.Tensor, x_ref: torch.Tensor, reference: nn.Module | None
                  ) -> torch.Tensor:
    if distance == "l2":
        return (x_adv - x_ref).flatten(1).pow(2).sum(1).mean()
    if reference is None:
        raise ValueError("distance='frechet' needs reference=, the classifier whose features it compares")
    return frechet_loss(features(reference, x_adv), features(reference, x_ref).detach())


def finetune_atgan(generator: nn.Module, target: nn.Module, settings: ATGANSettings | None = None, *,
                   distance: str | None = None, reference: nn.Module | None = None,
                   critic: ACCritic | None = None, out: str | Path | None = None, resume: bool = False,
                   device: str | torch.device = "cpu", progress: bool = True,
                   card: dict[str, Any] | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Fine-tune a copy of the conditional ``generator`` into ``G_adv`` against ``target`` (approach 2).

    ``generator`` itself is not changed (it is the fixed ``G`` of the distance term). ``distance`` overrides
    ``settings.distance``; ``reference`` is the classifier whose features the Frechet distance compares;
    ``critic`` (optional, with ``settings.critic_weight > 0``) adds ``-critic(G_adv) + aux CE`` to keep images
    realistic. Returns ``G_adv`` in eval mode and one record per epoch run; with ``out`` also
    ``generator.safetensors`` (load with :func:`alva.models.load_generator`).
    """
    settings = settings or ATGANSettings()
    if distance is not None and distance != settings.distance:
        settings = ATGANSettings(**{**asdict(settings), "distance": distance})
    device = torch.device(device)
    original = copy.deepcopy(generator).to(device).eval()
    adv = copy.deepcopy(generator).to(device)
    frozen = [m for m in (target, reference, critic) if m is not None]

    def loss_fn(batch_z, batch_y):
        with torch.no_grad():
            x_ref = original(batch_z, batch_y)
        x_adv = adv(batch_z, batch_y)
        logits = target(x_adv)
        loss_adv = adversarial_margin(logits, batch_y, None, settings.kappa).mean()
        loss_dist = distance_loss(settings.distance, x_adv, x_ref, reference)
        loss = loss_adv + settings.dist_weight * loss_dist
        metrics = {"loss_adv": loss_adv.item(), f"dist_{settings.distance}": loss_dist.item(),
                   "success": (logits.argmax(1) != batch_y).float().mean().item()}
        if critic is not None and settings.critic_weight > 0:
            score, aux = critic(x_adv)
            loss = loss + settings.critic_weight * (-score.mean() + settings.aux_weight * F.cross_entropy(aux, batch_y))
            metrics["critic_score"] = score.mean().item()
        return loss, metrics

    # G_adv keeps G's batch-norm statistics (eval mode), so before the first step G_adv(z, y) == G(z, y) exactly
    history = _train(adv, loss_fn, frozen, settings, asdict(settings), out, resume, device, progress, "AT-GAN",
                     train_mode=False)
    adv.eval()
    adv.card = {"method": "atgan-finetune", "settings": asdict(settings), **(card or {})}
    if out is not None:
        save_generator(adv.cpu(), adv.card, Path(out) / "generator.safetensors")
        adv.to(device)
    return adv, history


def approach1(critic: ACCritic, target: nn.Module, settings: ATGANSettings | None = None, *,
              latent_dim: int = 64, num_classes: int = 10, adv_weight: float = 1.0, out: str | Path | None = None,
              resume: bool = False, device: str | torch.device = "cpu", progress: bool = True,
              card: dict[str, Any] | None = None) -> tuple[ACGenerator, list[dict[str, Any]]]:
    """The seed's approach 1: a fresh :class:`ACGenerator` against a frozen, fully trained critic.

    The generator minimises ``-critic(G(z, y)) + aux_weight * CE(aux(G(z, y)), y) + adv_weight * L_adv(C(G), y)``;
    the critic never trains (the seed's setup). ``settings.distance`` and ``dist_weight`` are not used.
    """
    settings = settings or ATGANSettings()
    device = torch.device(device)
    torch.manual_seed(settings.seed)
    generator = ACGenerator(latent_dim, num_classes).to(device)

    def loss_fn(batch_z, batch_y):
        x = generator(batch_z, batch_y)
        score, aux = critic(x)
        logits = target(x)
        loss_adv = adversarial_margin(logits, batch_y, None, settings.kappa).mean()
        loss_aux = F.cross_entropy(aux, batch_y)
        loss = -score.mean() + settings.aux_weight * loss_aux + adv_weight * loss_adv
        return loss, {"critic_score": score.mean().item(), "loss_aux": loss_aux.item(), "loss_adv": loss_adv.item(),
                      "success": (logits.argmax(1) != batch_y).float().mean().item()}

    recorded = {**asdict(settings), "adv_weight": adv_weight, "latent_dim": latent_dim}
    history = _train(generator, loss_fn, [critic, target], settings, recorded, out, resume, device, progress,
                     "approach 1", train_mode=True)
    generator.eval()
    generator.card = {"method": "approach1", "settings": recorded, **(card or {})}
    if out is not None:
        save_generator(generator.cpu(), generator.card, Path(out) / "generator.safetensors")
        generator.to(device)
    return generator, history


# The critic trained beside the shipped ``mnist/acwgan-gp`` (its train_gan checkpoint, critic only).
SHIPPED_CRITIC = Path(__file__).resolve().parents[1] / "models" / "critics" / "mnist-acwgan-gp.safetensors"


def load_critic(path: str | Path = SHIPPED_CRITIC, num_classes: int = 10) -> ACCritic:
    """The critic of a :func:`alva.training.gan.train_gan` checkpoint (key ``"critic"``), frozen, in eval mode;
    by default the one trained beside the shipped ``mnist/acwgan-gp``."""
    critic = ACCritic(num_classes)
    critic.load_state_dict(load_checkpoint(path)["critic"])
    return critic.eval().requires_grad_(False)


def _train(generator: nn.Module, loss_fn, frozen: list[nn.Module], settings: ATGANSettings,
           recorded: dict[str, Any], out, resume: bool, device, progress: bool, title: str, *,
           train_mode: bool) -> list[dict[str, Any]]:
    optimizer = torch.optim.Adam(generator.parameters(), lr=settings.lr, betas=(0.5, 0.9))
    checkpoint = Path(out) / CHECKPOINT if out is not None else None
    start_epoch, elapsed = 0, 0.0
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs out=, the folder of the run to continue")
        if checkpoint.exists():
            state = load_checkpoint(checkpoint)
            check_same_settings(checkpoint, state["settings"], recorded, may_change=("epochs",))
            generator.load_state_dict(state["generator"])
            optimizer.load_state_dict(state["optimizer"])
            start_epoch, elapsed = int(state["epochs_done"]), float(state.get("train_time_s", 0.0))
    logger = MetricsLogger(out, resume_step=start_epoch + 1 if resume else None) if out is not None else None
    history: list[dict[str, Any]] = []
    try:
        with contextlib.ExitStack() as stack:
            for model in frozen:
                stack.enter_context(attack_mode(model))
            for epoch in range(start_epoch, settings.epochs):
                torch.manual_seed(epoch_seed(settings.seed, epoch))
                started = time.perf_counter()
                generator.train(train_mode)
                totals: dict[str, float] = {}
                bar = tqdm(range(settings.steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}",
                           disable=not progress, leave=False, dynamic_ncols=True)
                for step in bar:
                    z = torch.randn(settings.batch_size, *generator.latent_shape, device=device)
                    y = torch.randint(0, generator.num_classes, (settings.batch_size,), device=device)
                    loss, metrics = loss_fn(z, y)
                    if not torch.isfinite(loss):
                        raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, step {step + 1}")
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    metrics["loss"] = loss.item()
                    for k, v in metrics.items():
                        totals[k] = totals.get(k, 0.0) + v
                took = time.perf_counter() - started
                elapsed += took
                record = {"epoch": epoch + 1, "train": {k: v / settings.steps_per_epoch for k, v in totals.items()},
                          "time_s": round(took, 3)}
                history.append(record)
                if out is not None:
                    grid = sample_grid(generator, settings.seed, True)
                    atomic_write_bytes(Path(out) / "samples" / f"epoch_{epoch + 1:03d}.png",
                                       grid_png(grid, f"{title}, epoch {epoch + 1}"))
                    logger.log(epoch + 1, record)
                    save_checkpoint(checkpoint, {"epochs_done": epoch + 1, "train_time_s": elapsed,
                                                 "settings": recorded, "generator": generator.state_dict(),
                                                 "optimizer": optimizer.state_dict()})
    finally:
        if logger is not None:
            logger.close()
    generator.train_time_s = elapsed
    return history

