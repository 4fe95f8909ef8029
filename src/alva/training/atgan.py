"""Adversarial generators for unrestricted adversarial examples, trained by :func:`alva.training.loop.fit` with
:class:`GeneratorObjective` (one epoch: ``steps_per_epoch`` Adam steps on fresh draws of ``(z, y)``, no data set;
a 10 x 10 sample grid, row = class, after every epoch).

- :func:`finetune_atgan` (after AT-GAN, Wang et al. 2019, "AT-GAN: An Adversarial Generator Model for
  Non-constrained Adversarial Examples"): fine-tune a copy ``G_adv`` of a trained conditional generator ``G`` so
  that the target classifier misreads ``G_adv(z, y)`` while it stays close to ``G(z, y)``::

      L = L_adv(C(G_adv(z, y)), y) + dist_weight * D(G_adv(z, y), G(z, y)) [+ critic_weight * critic terms]

  ``D`` is AT-GAN's squared L2 distance per image, or the Frechet distance (of FID, Heusel et al. 2017) between
  the batch's features of a reference classifier: a distance between distributions, not image by image.
- :func:`train_against_critic`: a fresh conditional generator against a frozen, fully trained AC-WGAN-GP critic
  and the target classifier. It does not catch up with a critic trained to the end and draws noise; the command
  measures that failure.

``L_adv`` is the Carlini-Wagner margin clamped at ``-kappa`` (:func:`alva.training.advgan.adversarial_margin`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.base import attack_mode
from alva.models.gan import ACCritic, ACGenerator, Generator, save_generator
from alva.tracking.checkpoint import load_checkpoint
from alva.training.advgan import adversarial_margin
from alva.training.gan import sample_grid
from alva.training.loop import fit
from alva.training.objectives import ManualObjective, check_finite
from alva.training.settings import check_run, loop_settings

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
        check_run(self.epochs, self.batch_size, self.lr, min_batch_size=2)
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose one of {DISTANCES}")


def features(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Differentiable penultimate features of a zoo classifier (``Normalized`` around an ``nn.Sequential``)."""
    net = getattr(classifier, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError("the Frechet distance needs a zoo classifier: Normalized around an nn.Sequential")
    mean, std = cast(torch.Tensor, classifier.mean), cast(torch.Tensor, classifier.std)
    return net[:-1]((x - mean) / std).flatten(1)


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


class GeneratorObjective(ManualObjective):
    """Train a conditional generator (the model of :func:`~alva.training.loop.fit`) on ``loss(z, y)`` with Adam
    (betas 0.5, 0.9), ``frozen`` models in attack mode; ``train_mode=False`` keeps the generator in eval mode
    (batch-norm statistics fixed). ``recorded`` identifies the run for resume; ``title`` heads the sample grids."""

    may_change = ("epochs",)

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict[str, float]]],
                 frozen: list[nn.Module], settings: ATGANSettings, recorded: dict[str, Any], *, name: str,
                 title: str, train_mode: bool) -> None:
        self.loss, self.frozen, self.settings, self.recorded = loss, frozen, settings, recorded
        self.name, self.title, self.train_mode = name, title, train_mode

    def setup(self, model, train_data, settings, device) -> None:
        self.generator, self.device = model, device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.settings.lr, betas=(0.5, 0.9))

    def running(self):
        stack = contextlib.ExitStack()
        for model in self.frozen:
            stack.enter_context(attack_mode(model))
        return stack

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch
        self.generator.train(self.train_mode)

    def batches(self, train_data, settings, epoch):
        n, g = self.settings.batch_size, self.generator
        for _ in range(self.settings.steps_per_epoch):
            z = torch.randn(n, *g.latent_shape, device=self.device)
            yield z, torch.randint(0, g.num_classes, (n,), device=self.device)

    def training_step(self, x, y, batch):
        loss, metrics = self.loss(x, y)
        check_finite(loss, "loss", self.epoch, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        metrics["loss"] = loss.item()
        return metrics, 1.0

    def sample_grid(self, model, epoch):
        return sample_grid(model, self.settings.seed, True), f"{self.title}, epoch {epoch + 1}"

    def parts(self) -> dict[str, Any]:
        return {"generator": self.generator, "optimizer": self.optimizer}

    def describe(self) -> dict:
        return {"name": self.name, **{k: v for k, v in self.recorded.items() if k != "epochs"}}


def _train(generator: Generator | ACGenerator, objective: GeneratorObjective, out, resume: bool, device, progress: bool,
           card: dict[str, Any]) -> list[dict[str, Any]]:
    """Train ``generator`` with ``objective``, then leave it in eval mode with ``card`` (saved to ``out``)."""
    history = fit(generator, None, loop_settings(objective.settings), objective=objective, out=out, resume=resume,
                  device=device, progress=progress)
    generator.train_time_s = objective.train_time_s
    generator.eval()
    generator.card = card
    if out is not None:
        save_generator(generator.cpu(), card, Path(out) / "generator.safetensors")
        generator.to(device)
    return history


def finetune_atgan(generator: Generator | ACGenerator, target: nn.Module, settings: ATGANSettings | None = None, *,
                   distance: str | None = None, reference: nn.Module | None = None,
                   critic: ACCritic | None = None, out: str | Path | None = None, resume: bool = False,
                   device: str | torch.device = "cpu", progress: bool = True,
                   card: dict[str, Any] | None = None) -> tuple[Generator | ACGenerator, list[dict[str, Any]]]:
    """Fine-tune a copy of the conditional ``generator`` into ``G_adv`` against ``target`` (AT-GAN).

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
    objective = GeneratorObjective(loss_fn, frozen, settings, asdict(settings), name="atgan-finetune",
                                   title="AT-GAN", train_mode=False)
    history = _train(adv, objective, out, resume, device, progress,
                     {"method": "atgan-finetune", "settings": asdict(settings), **(card or {})})
    return adv, history


def train_against_critic(critic: ACCritic, target: nn.Module, settings: ATGANSettings | None = None, *,
                         latent_dim: int = 64, num_classes: int = 10, adv_weight: float = 1.0,
                         out: str | Path | None = None, resume: bool = False, device: str | torch.device = "cpu",
                         progress: bool = True, card: dict[str, Any] | None = None
                         ) -> tuple[ACGenerator, list[dict[str, Any]]]:
    """Train a fresh :class:`ACGenerator` against a frozen, fully trained critic and the ``target`` classifier.

    The generator minimises ``-critic(G(z, y)) + aux_weight * CE(aux(G(z, y)), y) + adv_weight * L_adv(C(G), y)``;
    the critic never trains. ``settings.distance`` and ``dist_weight`` are not used.
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
    objective = GeneratorObjective(loss_fn, [critic, target], settings, recorded, name="against-critic",
                                   title="against the critic", train_mode=True)
    history = _train(generator, objective, out, resume, device, progress,
                     {"method": "against-critic", "settings": recorded, **(card or {})})
    return generator, history


# The critic trained beside the shipped ``mnist/acwgan-gp`` (its train_gan checkpoint, critic only).
SHIPPED_CRITIC = Path(__file__).resolve().parents[1] / "models" / "critics" / "mnist-acwgan-gp.safetensors"


def load_critic(path: str | Path = SHIPPED_CRITIC, num_classes: int = 10) -> ACCritic:
    """The critic of a :func:`alva.training.gan.train_gan` checkpoint (key ``"critic"``), frozen, in eval mode;
    by default the one trained beside the shipped ``mnist/acwgan-gp``."""
    critic = ACCritic(num_classes)
    critic.load_state_dict(load_checkpoint(path)["critic"])
    return critic.eval().requires_grad_(False)
