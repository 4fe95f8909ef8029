"""The one training loop: seeded, resumable after every epoch, logged to JSONL and TensorBoard.

The objective (clean, or an adversarial recipe) is a part passed in; the loop is written once.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from alva import distributed
from alva.data.loaders import make_loader
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.logger import MetricsLogger
from alva.training.objectives import Objective, Standard

CHECKPOINT = "checkpoint.safetensors"
SCHEDULES = ("constant", "cosine", "cyclic")
OPTIMIZERS = ("adam", "sgd")


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
    # evaluation, e.g. "pgd20_acc" for the adversarial validation accuracy); stop after ``patience`` epochs
    # without improvement (0: never stop, but still end with the best weights).
    monitor: str = ""
    patience: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; choose one of {SCHEDULES}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.patience and not self.monitor:
            raise ValueError("patience needs monitor, the evaluation figure to watch (e.g. pgd20_acc)")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


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


def epoch_seed(seed: int, epoch: int) -> int:
    """The global torch seed for one epoch (dropout, random starts): a function of ``(seed, epoch)``."""
    return (int(seed) * 7919 + int(epoch) * 104729) % (2**63 - 1)


def fit(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], settings: TrainSettings, *,
        objective: Objective | None = None, out: str | Path | None = None, resume: bool = False,
        eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, device: str | torch.device = "cpu",
        progress: bool = True, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
        ) -> list[dict[str, Any]]:
    """Train ``model`` in place on ``train_data`` and return one record per epoch run.

    With ``out``, a checkpoint is written atomically after every epoch and metrics go to
    ``out/metrics.jsonl`` and TensorBoard (``out/tb``); ``resume=True`` continues from the last
    finished epoch and ends with the same weights as an uninterrupted run. Batches, dropout and
    random starts depend only on ``(settings.seed, epoch)``.

    Under ``torchrun`` (a process group initialised, see :mod:`alva.distributed`) the training steps run through
    :class:`~torch.nn.parallel.DistributedDataParallel`: every rank draws the same shuffled global batch of
    ``settings.batch_size`` and trains on its own contiguous part of it, so the all-reduced gradient is that of
    the whole batch; only rank 0 writes checkpoints, logs and calls ``on_epoch_end``, the others wait.
    """
    objective = objective or Standard()
    x_train, y_train = train_data
    model.to(device)
    optimizer = make_optimizer(model, settings)
    steps_per_epoch = math.ceil(len(x_train) / settings.batch_size)
    world, rank = distributed.world_size(), distributed.rank()
    smallest = len(x_train) % settings.batch_size or settings.batch_size
    if distributed.is_initialized() and min(smallest, len(x_train)) < world:
        raise ValueError(f"every batch needs at least one sample per process: the smallest batch has {smallest} "
                         f"samples for {world} processes; change --batch-size or the training size")
    total_steps = settings.epochs * steps_per_epoch
    checkpoint = Path(out) / CHECKPOINT if out is not None else None

    start_epoch, best, stopped = 0, None, False
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs out=, the folder of the run to continue")
        if checkpoint.exists():
            start_epoch, best, stopped = _restore(checkpoint, model, optimizer, objective, settings)
    # Records are logged at step epoch + 1: keep those of the finished epochs, drop any of later ones.
    main = distributed.is_main()
    logger = (MetricsLogger(out, resume_step=start_epoch + 1 if resume else None)
              if out is not None and main else None)
    guarded = hasattr(objective, "check")
    # The training steps go through DDP (gradients all-reduced); evaluation, checks and saving use ``model``.
    trained = _DistributedModel(model) if distributed.is_initialized() else model

    history: list[dict[str, Any]] = []
    try:
        for epoch in range(start_epoch, settings.epochs):
            if stopped:
                break
            # One stream per rank for dropout and random starts; rank 0 (and a single process) as before.
            torch.manual_seed(epoch_seed(settings.seed, epoch) + rank)
            objective.start_epoch(epoch, settings.epochs)
            before = _snapshot(model, optimizer) if guarded else None
            started = time.perf_counter()
            train_stats = _train_epoch(trained, optimizer, objective, x_train, y_train, settings, epoch,
                                       steps_per_epoch, total_steps, device, progress and main)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": learning_rate(settings, (epoch + 1) * steps_per_epoch - 1, total_steps),
                "train": train_stats,
            }
            if guarded:
                xb, yb = _check_batch(x_train, y_train, settings.seed, epoch, device)
                figures, collapsed = objective.check(model, xb, yb)
                record["check"] = figures
                if collapsed:
                    # Catastrophic overfitting (Wong et al. 2020): back to the weights before this epoch, and stop.
                    model.load_state_dict(before["model"])
                    optimizer.load_state_dict(before["optimizer"])
                    record["stopped"] = "robust accuracy on a training batch collapsed: rolled back this epoch"
                    stopped = True
            if eval_data is not None:
                record["eval"] = objective.evaluate(model, *eval_data)
            if settings.monitor:
                value = _monitored(record, settings.monitor)
                if best is None or value > best["value"]:
                    best = {"value": value, "epoch": epoch + 1, "record": record,
                            "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                elif settings.patience and epoch + 1 - best["epoch"] >= settings.patience:
                    record["stopped"] = (f"{settings.monitor} did not improve for {settings.patience} epochs; "
                                         f"best {best['value']:.4f} at epoch {best['epoch']}")
                    stopped = True
            record["time_s"] = round(time.perf_counter() - started, 3)
            history.append(record)
            if logger is not None:
                logger.log(epoch + 1, record)
            if checkpoint is not None and main:
                save_checkpoint(checkpoint, {
                    "epochs_done": epoch + 1,
                    "stopped": stopped,
                    "settings": asdict(settings),
                    "objective": objective.describe(),
                    "objective_state": objective.state(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    **({"best": best} if best is not None else {}),
                })
            if on_epoch_end is not None and main:
                on_epoch_end(epoch + 1, record)
            distributed.barrier()
    finally:
        if logger is not None:
            logger.close()
    if best is not None and best["epoch"] != (history[-1]["epoch"] if history else None):
        model.load_state_dict(best["model"])
        if on_epoch_end is not None and main:
            on_epoch_end(best["epoch"], best["record"])
        distributed.barrier()
    return history


class _DistributedModel(DistributedDataParallel):
    """DDP for the training forward passes only: a call in eval mode (the attacks inside adversarial objectives
    run under :func:`alva.attacks.base.attack_mode`) or without autograd goes straight to the wrapped module, so
    only the forward pass of the loss is synchronised and its gradients all-reduced."""

    def forward(self, *args, **kwargs):
        if not self.training or not torch.is_grad_enabled():
            return self.module(*args, **kwargs)
        return super().forward(*args, **kwargs)


def _snapshot(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    return {"model": copy.deepcopy(model.state_dict()), "optimizer": copy.deepcopy(optimizer.state_dict())}


def _check_batch(x: torch.Tensor, y: torch.Tensor, seed: int, epoch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random training batch for the overfitting guard, a function of ``(seed, epoch)``."""
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch) + 1))[:1024]
    return x[rows].to(device), y[rows].to(device)


def _monitored(record: dict[str, Any], key: str) -> float:
    for part in ("eval", "check", "train"):
        if key in record.get(part, {}):
            return float(record[part][key])
    known = sorted(k for part in ("eval", "check", "train") for k in record.get(part, {}))
    raise ValueError(f"monitor {key!r} is not among this run's figures {known}; pass eval data or pick another")


def _restore(checkpoint: Path, model: nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
             settings: TrainSettings) -> tuple[int, dict[str, Any] | None, bool]:
    state = load_checkpoint(checkpoint)
    saved = state["settings"]
    check_same_settings(checkpoint, saved, asdict(settings))
    if state["objective"] != objective.describe():
        raise ValueError(f"cannot resume {checkpoint}: objective {objective.describe()} differs from the "
                         f"saved {state['objective']}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    objective.load_state(state.get("objective_state", {}))
    best = state.get("best")
    if best is not None:
        best["value"], best["epoch"] = float(best["value"]), int(best["epoch"])
    return int(state["epochs_done"]), best, bool(state.get("stopped", False))


def _train_epoch(model, optimizer, objective, x_train, y_train, settings, epoch, steps_per_epoch, total_steps,
                 device, progress) -> dict[str, float]:
    model.train()
    loader = make_loader(x_train, y_train, settings.batch_size, shuffle=True, seed=settings.seed, epoch=epoch)
    totals: dict[str, float] = {}
    seen = 0
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{settings.epochs}", disable=not progress, leave=False,
               dynamic_ncols=True)
    world = distributed.world_size() if isinstance(model, DistributedDataParallel) else 1
    for i, (xb, yb) in enumerate(bar):
        if world > 1:
            # This rank's contiguous part of the global batch; every rank drew the same batch.
            whole = len(xb)
            xb, yb = xb.tensor_split(world)[distributed.rank()], yb.tensor_split(world)[distributed.rank()]
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(settings, epoch * steps_per_epoch + i, total_steps)
        loss, metrics = objective(model, xb, yb)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, batch {i + 1}: lower the lr")
        optimizer.zero_grad(set_to_none=True)
        if world > 1 and len(xb) * world != whole:
            # DDP averages over ranks: weigh unequal parts so that the result is the mean over the whole batch.
            loss = loss * (len(xb) * world / whole)
        loss.backward()
        optimizer.step()
        n = len(xb)
        seen += n
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v * n
        bar.set_postfix({k: f"{v / seen:.4f}" for k, v in totals.items()}, refresh=False)
    if world > 1:
        keys = sorted(totals)
        summed = torch.tensor([totals[k] for k in keys] + [seen], dtype=torch.float64,
                              device=next(model.parameters()).device)
        torch.distributed.all_reduce(summed)
        totals, seen = dict(zip(keys, summed[:-1].tolist(), strict=True)), summed[-1].item()
    return {k: v / seen for k, v in totals.items()}
