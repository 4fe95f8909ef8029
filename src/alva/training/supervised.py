"""A loss :class:`~alva.training.objectives.Objective` as a step of the one training loop: the loop's optimiser
(:func:`~alva.training.settings.make_optimizer`), its learning-rate schedule, the divergence check, the weight
average (``TrainSettings.ema``) and, under ``torchrun``, :class:`~torch.nn.parallel.DistributedDataParallel` over
the batch."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from alva import distributed
from alva.training.objectives import ManualObjective, Objective, TrainingDiverged
from alva.training.settings import TrainSettings, ema_decay, learning_rate, make_optimizer


class Supervised(ManualObjective):
    """Minimise ``objective(model, x, y)`` with one optimiser over the model's trainable parameters.

    Under ``torchrun`` every rank draws the same shuffled global batch of ``settings.batch_size`` and trains on its
    own contiguous part of it, so the all-reduced gradient is that of the whole batch.

    With ``settings.ema`` a copy of the model holds the exponential moving average of its weights (Polyak
    averaging; for adversarial training see Gowal et al. 2020, "Uncovering the limits of adversarial training").
    At the end of each epoch the two swap, so that the loop evaluates, monitors, checkpoints and saves the average;
    the next epoch swaps back and trains on from the raw weights.
    """

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        self.name = objective.name
        self.lr_scale = 1.0  # lowered by the loop after a collapse (TrainSettings.collapse_lr_factor)
        if hasattr(objective, "check"):
            self.check = objective.check

    def setup(self, model: nn.Module, train_data, settings: TrainSettings, device) -> None:
        x_train = train_data[0]
        self.model, self.settings = model, settings
        self.optimizer = make_optimizer(model, settings)
        self.steps_per_epoch = math.ceil(len(x_train) / settings.batch_size)
        self.total_steps = settings.epochs * self.steps_per_epoch
        world = distributed.world_size()
        smallest = len(x_train) % settings.batch_size or settings.batch_size
        if distributed.is_initialized() and min(smallest, len(x_train)) < world:
            raise ValueError(f"every batch needs at least one sample per process: the smallest batch has {smallest} "
                             f"samples for {world} processes; change --batch-size or the training size")
        # The training steps go through DDP (gradients all-reduced); evaluation, checks and saving use ``model``.
        self.trained = _DistributedModel(model) if distributed.is_initialized() else model
        self.average = copy.deepcopy(model) if settings.ema else None

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch
        if self.average is not None and epoch > 0:
            _swap(self.model, self.average)  # the model held the average since the end of the last epoch
        self.objective.start_epoch(epoch, epochs)
        self.trained.train()

    def training_step(self, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[dict[str, float], float]:
        world = distributed.world_size() if isinstance(self.trained, DistributedDataParallel) else 1
        whole = len(x)
        if world > 1:
            # This rank's contiguous part of the global batch; every rank drew the same batch.
            x, y = x.tensor_split(world)[distributed.rank()], y.tensor_split(world)[distributed.rank()]
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_scale * learning_rate(self.settings, self.epoch * self.steps_per_epoch + batch,
                                                        self.total_steps)
        loss, metrics = self.objective(self.trained, x, y)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at epoch {self.epoch + 1}, batch {batch + 1}: lower the lr")
        self.optimizer.zero_grad(set_to_none=True)
        if world > 1 and len(x) * world != whole:
            # DDP averages over ranks: weigh unequal parts so that the result is the mean over the whole batch.
            loss = loss * (len(x) * world / whole)
        loss.backward()
        self.optimizer.step()
        if self.average is not None:
            _update_average(self.average, self.model, ema_decay(self.settings, self.epoch * self.steps_per_epoch
                                                                + batch))
        return metrics, len(x)

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        if self.average is not None:
            _swap(self.model, self.average)
        last = (epoch + 1) * self.steps_per_epoch - 1
        return {"lr": self.lr_scale * learning_rate(self.settings, last, self.total_steps)}

    def lower_learning_rate(self, factor: float) -> None:
        """Multiply the learning rate by ``factor`` for the rest of the run (kept in the checkpoint)."""
        self.lr_scale *= factor

    def parts(self) -> dict[str, Any]:
        # Between epochs "model" is the average and "ema_raw" the raw weights training goes on from.
        averaged = {"ema_raw": self.average} if self.average is not None else {}
        return {"model": self.model, "optimizer": self.optimizer, **averaged}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "objective_state": self.objective.state(), "lr_scale": self.lr_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.objective.load_state(state.get("objective_state", {}))
        self.lr_scale = float(state.get("lr_scale", 1.0))

    def describe(self) -> dict:
        return self.objective.describe()

    def evaluate(self, model, x, y):
        return self.objective.evaluate(model, x, y)


@torch.no_grad()
def _update_average(average: nn.Module, model: nn.Module, decay: float) -> None:
    """``average <- decay * average + (1 - decay) * model`` for every floating entry (weights and batch-norm
    statistics); other entries (batch counts) are copied."""
    for mean, now in zip(average.state_dict().values(), model.state_dict().values(), strict=True):
        if mean.is_floating_point():
            mean.lerp_(now, 1.0 - decay)
        else:
            mean.copy_(now)


@torch.no_grad()
def _swap(a: nn.Module, b: nn.Module) -> None:
    """Exchange the weights and buffers of two modules of the same architecture, in place."""
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        held = x.clone()
        x.copy_(y)
        y.copy_(held)


class _DistributedModel(DistributedDataParallel):
    """DDP for the training forward passes only: a call in eval mode (the attacks inside adversarial objectives
    run under :func:`alva.attacks.base.attack_mode`) or without autograd goes straight to the wrapped module, so
    only the forward pass of the loss is synchronised and its gradients all-reduced."""

    def forward(self, *args, **kwargs):
        if not self.training or not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)
