"""How the one training loop optimises: :class:`TrainSettings`, the optimiser, the learning-rate schedule and the
per-epoch seed, all recorded in a run's checkpoint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

SCHEDULES = ("constant", "cosine", "cyclic")
OPTIMIZERS = ("adam", "sgd")
COLLAPSE_RETRIES = 3


@dataclass
class TrainSettings:
    """How to optimise: everything here is recorded in the checkpoint and must match on resume."""

    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    seed: int = 0
    # Early stopping: keep the weights of the epoch with the highest ``monitor`` (a key of the objective's
    # evaluation, e.g. "pgd20_acc" for the adversarial validation accuracy; of tied epochs the later one); stop
    # after ``patience`` epochs without a rise (0: never stop, but still end with the best weights).
    monitor: str = ""
    patience: int = 0
    # Weight averaging: an exponential moving average of the weights with this decay (0: off) is what each epoch
    # evaluates, monitors and saves, while training goes on from the raw weights.
    ema: float = 0.0
    # When an objective's guard sees catastrophic overfitting (fast FGSM's check): 0 rolls back the epoch and
    # stops; a factor in (0, 1) rolls back, multiplies the learning rate by it for the rest of the run and trains
    # the epoch again (at most ``COLLAPSE_RETRIES`` times per epoch, then stops).
    collapse_lr_factor: float = 0.0

    def __post_init__(self) -> None:
        check_run(self.epochs, self.batch_size, self.lr)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema is the decay of the weight average, in [0, 1) (0: off), got {self.ema}")
        if not 0.0 <= self.collapse_lr_factor < 1.0:
            raise ValueError("collapse_lr_factor multiplies the learning rate after a collapse, in (0, 1) (0: stop "
                             f"instead), got {self.collapse_lr_factor}")
        if self.patience and not self.monitor:
            raise ValueError("patience needs monitor, the evaluation figure to watch (e.g. pgd20_acc)")


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


def learning_rate(settings: TrainSettings, step: int, total_steps: int) -> float:
    """The learning rate at optimiser step ``step`` of ``total_steps``: a pure function, so resume needs no state."""
    if settings.schedule == "cosine":
        return 0.5 * settings.lr * (1 + math.cos(math.pi * step / max(total_steps, 1)))
    if settings.schedule == "cyclic":
        # Wong et al. 2020: linear from 0 up to lr over the first 2/5 of training, then linear down to 0.
        t = step / max(total_steps, 1)
        return settings.lr * (t / 0.4 if t < 0.4 else max(0.0, (1 - t) / 0.6))
    return settings.lr


def ema_decay(settings: TrainSettings, step: int) -> float:
    """The weight-average decay after optimiser step ``step`` (0-based): ``settings.ema``, lowered early on as
    ``(1 + step) / (10 + step)`` so that the average does not lean on the first, random weights."""
    return min(settings.ema, (1 + step) / (10 + step))


def epoch_seed(seed: int, epoch: int) -> int:
    """The global torch seed for one epoch (dropout, random starts): a function of ``(seed, epoch)``."""
    return (int(seed) * 7919 + int(epoch) * 104729) % (2**63 - 1)


def check_run(epochs: int, batch_size: int, lr: float, *, min_batch_size: int = 1) -> None:
    """Raise :class:`ValueError` unless ``epochs >= 1``, ``batch_size >= min_batch_size`` and ``lr > 0``."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if batch_size < min_batch_size:
        raise ValueError(f"batch_size must be >= {min_batch_size}, got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")


def loop_settings(settings: Any) -> TrainSettings:
    """The :class:`TrainSettings` of an objective that owns its optimisers (``GanSettings``, ``AdvGANSettings``,
    ``ATGANSettings``): the loop uses their epochs, batch size and seed; their learning rate is recorded."""
    return TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed)
