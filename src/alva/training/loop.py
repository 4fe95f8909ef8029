"""The one training loop: seeded, resumable after every epoch, logged to JSONL and TensorBoard.

The objective is a part passed in: a loss (clean, multi-label or an adversarial recipe, see
:class:`~alva.training.objectives.Objective`), for which the loop owns the optimiser, or a
:class:`~alva.training.objectives.ManualObjective` that owns its networks and optimisers (GANs, AdvGAN, AT-GAN).
Epochs, seeding, checkpoints, resume, logs, sample grids and early stopping are written once, here.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alva import distributed
from alva.models.loading import model_io
from alva.report.training_figures import grid_png
from alva.tracking.checkpoint import differences, load_checkpoint, refuse_changes, save_checkpoint
from alva.tracking.files import atomic_write_bytes
from alva.tracking.logger import MetricsLogger, read_metrics
from alva.tracking.verify import tensors_sha256
from alva.training.objectives import ManualObjective, Objective, Standard, TrainingDiverged
from alva.training.settings import (
    COLLAPSE_RETRIES,
    OPTIMIZERS,
    SCHEDULES,
    TrainSettings,
    epoch_seed,
    learning_rate,
    make_optimizer,
)
from alva.training.supervised import Supervised

__all__ = ["CHECKPOINT", "OPTIMIZERS", "SCHEDULES", "TrainSettings", "TrainingDataError", "TrainingDiverged",
           "check_training_data", "epoch_seed", "fit", "learning_rate", "make_optimizer"]

CHECKPOINT = "checkpoint.safetensors"
REDO_TRAINING = "train again from the first epoch (rerun with --overwrite)"


def fit(model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor] | None, settings: TrainSettings, *,
        objective: Objective | ManualObjective | None = None, out: str | Path | None = None, resume: bool = False,
        eval_data: tuple[torch.Tensor, torch.Tensor] | None = None, device: str | torch.device = "cpu",
        progress: bool = True, on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None
        ) -> list[dict[str, Any]]:
    """Train ``model`` in place on ``train_data`` and return one record per epoch run.

    With ``out``, a checkpoint is written atomically after every epoch, metrics go to ``out/metrics.jsonl`` and
    TensorBoard (``out/tb``) and an objective's sample grid to ``out/samples/epoch_NNN.png``; ``resume=True``
    continues from the last finished epoch, refuses settings or an objective that differ from the saved run, and
    ends with the same weights as an uninterrupted run; it refuses a folder whose checkpoint is missing or damaged
    while its log records finished epochs (a silent start from scratch would hide that). Batches, dropout and
    random draws depend only on ``(settings.seed, epoch)``.

    Under ``torchrun`` (a process group initialised, see :mod:`alva.distributed`) a loss objective's steps run
    through :class:`~torch.nn.parallel.DistributedDataParallel` (see :class:`~alva.training.supervised.Supervised`);
    only rank 0 writes checkpoints, logs and calls ``on_epoch_end``, the others wait.
    """
    objective = objective or Standard()
    steps = objective if isinstance(objective, ManualObjective) else Supervised(objective)
    for name, data in (("train_data", train_data), ("eval_data", eval_data)):
        check_training_data(model, data, name, bounded=steps is not objective)
    if steps is objective and distributed.is_initialized():
        raise ValueError(f"objective {objective.name!r} trains in one process; run it without torchrun")
    device = torch.device(device)
    model.to(device)
    steps.setup(model, train_data, settings, device)
    folder = Path(out) if out is not None else None
    checkpoint = folder / CHECKPOINT if folder is not None else None

    start_epoch, best, stopped, elapsed = 0, None, False, 0.0
    last_record: dict[str, Any] | None = None
    data_print = _data_fingerprint(train_data) if folder is not None else None
    if resume:
        if checkpoint is None:
            raise ValueError("resume=True needs out=, the folder of the run to continue")
        if checkpoint.exists():
            start_epoch, best, stopped, elapsed, last_record = _restore(checkpoint, steps, settings, data_print)
        elif logged := read_metrics(checkpoint.parent / "metrics.jsonl"):
            raise FileNotFoundError(f"{checkpoint} is missing, but {checkpoint.parent / 'metrics.jsonl'} records "
                                    f"{len(logged)} finished epoch(s): the run cannot go on from where it was; "
                                    "restore the file, or start again (--overwrite)")
    rank, main = distributed.rank(), distributed.is_main()
    if checkpoint is not None and main and start_epoch == 0:
        # The state before the first epoch: from here on a run folder always has a checkpoint, so a missing one
        # is a deleted one, never a run killed before its first checkpoint.
        _save_state(checkpoint, steps, settings, {"epochs_done": 0, "stopped": False, "train_time_s": 0.0,
                                                  "data": data_print})
    # Records are logged at step epoch + 1: keep those of the finished epochs, drop any of later ones.
    logger = (MetricsLogger(folder, resume_step=start_epoch + 1 if resume else None)
              if folder is not None and main else None)
    if last_record is not None and on_epoch_end is not None and main:
        # Again for the epoch of the checkpoint: a run killed between its checkpoint and this call resumes with
        # what the call writes (the model and its card) made from that epoch, not left from the one before.
        on_epoch_end(start_epoch, last_record)
    check = getattr(steps, "check", None)  # the guard against catastrophic overfitting, when the objective has one

    history: list[dict[str, Any]] = []
    try:
        with steps.running():
            epoch = start_epoch
            retried: list[dict[str, Any]] = []  # the collapsed tries of this epoch
            while epoch < settings.epochs and not stopped:
                # One stream per rank for dropout and random draws; rank 0 is that of a single process.
                torch.manual_seed(epoch_seed(settings.seed, epoch) + rank)
                # Taken before start_epoch, as a checkpoint holds it (with --ema: the average in "model").
                before = copy.deepcopy(steps.state_dict()) if check is not None else {}
                steps.start_epoch(epoch, settings.epochs)
                started = time.perf_counter()
                record: dict[str, Any] = {"epoch": epoch + 1,
                                          "train": _train_epoch(steps, train_data, settings, epoch, device,
                                                                progress and main)}
                elapsed += time.perf_counter() - started
                record.update(steps.end_epoch(model, epoch))
                if check is not None and train_data is not None:
                    xb, yb = _check_batch(*train_data, settings.seed, epoch, device)
                    figures, collapsed = check(model, xb, yb)
                    record["check"] = figures
                    if collapsed:
                        # Catastrophic overfitting (Wong et al. 2020): back to the weights before this epoch.
                        steps.load_state_dict(before)
                        if settings.collapse_lr_factor and len(retried) < COLLAPSE_RETRIES:
                            retried.append({**figures, "lr": record.get("lr"), "time_s": _since(started)})
                            steps.lower_learning_rate(settings.collapse_lr_factor)
                            continue
                        record["stopped"] = "robust accuracy on a training batch collapsed: rolled back this epoch"
                        stopped = True
                if retried:
                    record["retried"], retried = retried, []
                if eval_data is not None:
                    record["eval"] = _evaluate_once(steps, model, eval_data, main)
                if settings.monitor:
                    value = _monitored(record, settings.monitor)
                    if best is None or value >= best["value"]:
                        # A tie keeps the later epoch, trained longer; patience counts from the last rise.
                        risen = epoch + 1 if best is None or value > best["value"] else best["risen"]
                        best = {"value": value, "epoch": epoch + 1, "risen": risen, "record": record,
                                "model": {k: v.detach().clone() for k, v in model.state_dict().items()}}
                    if settings.patience and epoch + 1 - best["risen"] >= settings.patience:
                        record["stopped"] = (f"{settings.monitor} did not improve for {settings.patience} epochs; "
                                             f"best {best['value']:.4f} at epoch {best['epoch']}")
                        stopped = True
                record["time_s"] = _since(started)
                history.append(record)
                if logger is not None and folder is not None:
                    _save_epoch(folder, logger, steps, model, settings, record,
                                {"epochs_done": epoch + 1, "stopped": stopped, "train_time_s": elapsed,
                                 "record": record, "data": data_print, **({"best": best} if best is not None else {})})
                if on_epoch_end is not None and main:
                    on_epoch_end(epoch + 1, record)
                distributed.barrier()
                epoch += 1
    finally:
        if logger is not None:
            logger.close()
    steps.train_time_s = elapsed
    if best is not None and best["epoch"] != (history[-1]["epoch"] if history else None):
        model.load_state_dict(best["model"])
        if on_epoch_end is not None and main:
            on_epoch_end(best["epoch"], best["record"])
        distributed.barrier()
    return history


class TrainingDataError(ValueError):
    """Data that ``fit`` cannot learn from as given: not finite, outside the model's bounds, labels it lacks."""


def check_training_data(model: nn.Module, data: Any, name: str = "train_data", *, bounded: bool = True) -> None:
    """Refuse images ``fit`` would learn nonsense from: NaN or infinite values, and (``bounded``: a classifier's
    data) values outside the model's input bounds (:func:`alva.models.model_io`) or class labels outside its
    outputs.

    Raises:
        TrainingDataError: Naming ``name``, what is wrong and what the model expects.
    """
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not isinstance(data[0], torch.Tensor):
        return  # a manual objective's own data, or none
    x, y = data
    if not x.is_floating_point():
        raise TrainingDataError(f"{name}: images must be a floating-point tensor in the model's bounds, got dtype "
                                f"{x.dtype} (divide uint8 images by 255)")
    broken = ~torch.isfinite(x.flatten(1)).all(dim=1) if x.ndim > 1 else ~torch.isfinite(x)
    if broken.any():
        raise TrainingDataError(f"{name}: {int(broken.sum())} of {len(x)} images hold NaN or infinite values; "
                                "the data is broken, fix it before training")
    if not bounded or len(x) == 0:
        return
    lo, hi = model_io(model).bounds
    x_min, x_max = x.min().item(), x.max().item()
    if x_min < lo or x_max > hi:
        raise TrainingDataError(f"{name}: images have values in [{x_min:.4g}, {x_max:.4g}], outside the model's "
                                f"bounds [{lo:g}, {hi:g}]; scale them (uint8 images: divide by 255) and put "
                                "normalisation inside the model (alva.models.Normalized)")
    if isinstance(y, torch.Tensor) and y.ndim == 1 and not y.is_floating_point() and len(y):
        check_class_labels(model, x, y, name)


def check_class_labels(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    """Refuse class labels outside ``[0, outputs)`` of ``model`` (probed on two of the images); a model with one
    output (binary logistic regression on labels 0 and 1) is left to its objective."""
    training = model.training
    try:
        with torch.no_grad():
            outputs = model.eval()(x[:2].to(next(model.parameters(), torch.zeros(0)).device)).shape[-1]
    finally:
        model.train(training)
    if outputs > 1 and (int(y.min()) < 0 or int(y.max()) >= outputs):  # one output: a binary logistic model
        raise TrainingDataError(f"{name}: labels lie in [{int(y.min())}, {int(y.max())}] but the model gives "
                                f"{outputs} outputs (classes 0 to {outputs - 1})")


def _save_epoch(out: Path, logger: MetricsLogger, steps: ManualObjective, model: nn.Module,
                settings: TrainSettings, record: dict[str, Any], progress: dict[str, Any]) -> None:
    """The epoch's sample grid, its record in the logs, then the checkpoint (last: it marks the epoch done)."""
    epoch = record["epoch"]
    shown = steps.sample_grid(model, epoch - 1)
    if shown is not None:
        grid, title = shown
        atomic_write_bytes(out / "samples" / f"epoch_{epoch:03d}.png", grid_png(grid, title))
    logger.log(epoch, record)
    _save_state(out / CHECKPOINT, steps, settings, progress)


def _save_state(checkpoint: Path, steps: ManualObjective, settings: TrainSettings, progress: dict[str, Any]) -> None:
    save_checkpoint(checkpoint, {**progress, "settings": asdict(settings), "objective": steps.describe(),
                                 **steps.state_dict()})


def _check_batch(x: torch.Tensor, y: torch.Tensor, seed: int, epoch: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random training batch for the overfitting guard, a function of ``(seed, epoch)``."""
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch_seed(seed, epoch) + 1))[:1024]
    return x[rows].to(device), y[rows].to(device)


def _since(started: float) -> float:
    return round(time.perf_counter() - started, 3)


def _monitored(record: dict[str, Any], key: str) -> float:
    for part in ("eval", "check", "train"):
        if key in record.get(part, {}):
            return float(record[part][key])
    known = sorted(k for part in ("eval", "check", "train") for k in record.get(part, {}))
    raise ValueError(f"monitor {key!r} is not among this run's figures {known}; pass eval data or pick another")


def _data_fingerprint(train_data: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, Any] | None:
    """The size and SHA-256 of the training data, which a resumed run must train on again."""
    if train_data is None:
        return None
    return {"size": len(train_data[0]), "sha256": tensors_sha256({str(i): t for i, t in enumerate(train_data)})}


def _restore(checkpoint: Path, steps: ManualObjective, settings: TrainSettings, data: dict[str, Any] | None
             ) -> tuple[int, dict[str, Any] | None, bool, float, dict[str, Any] | None]:
    """Load the state of the last finished epoch after checking that settings, objective and training data are the
    saved ones (every difference listed); returns the progress and the record of that epoch."""
    state = load_checkpoint(checkpoint, REDO_TRAINING)
    # Checkpoints written before weight averaging and the collapse retry existed.
    saved = {"ema": 0.0, "collapse_lr_factor": 0.0, **state["settings"]}
    changed = differences(saved, asdict(settings), may_change=steps.may_change)
    changed += differences({"objective": state["objective"]}, {"objective": steps.describe()})
    if "data" in state:  # checkpoints written before they recorded the data are not checked for it
        changed += differences({"training data": state["data"]}, {"training data": data})
    refuse_changes(checkpoint, changed)
    steps.load_state_dict(state)
    best = state.get("best")
    if best is not None:
        best["value"], best["epoch"] = float(best["value"]), int(best["epoch"])
        best["risen"] = int(best.get("risen", best["epoch"]))  # checkpoints written before ties kept the later
    return (int(state["epochs_done"]), best, bool(state.get("stopped", False)),
            float(state.get("train_time_s", 0.0)), state.get("record"))


def _train_epoch(steps: ManualObjective, train_data, settings: TrainSettings, epoch: int, device: torch.device,
                 progress: bool) -> dict[str, float]:
    """One epoch of ``steps.training_step``; each figure is averaged with the weights the steps gave it."""
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    bar = tqdm(steps.batches(train_data, settings, epoch), desc=f"epoch {epoch + 1}/{settings.epochs}",
               disable=not progress, leave=False, dynamic_ncols=True)
    for i, (xb, yb) in enumerate(bar):
        metrics, weight = steps.training_step(xb.to(device, non_blocking=True), yb.to(device, non_blocking=True), i)
        for k, v in metrics.items():
            totals[k] = totals.get(k, 0.0) + v * weight
            weights[k] = weights.get(k, 0) + weight
        bar.set_postfix({k: f"{v / weights[k]:.4f}" for k, v in totals.items()}, refresh=False)
    if distributed.is_initialized():
        keys = sorted(totals)
        summed = torch.tensor([totals[k] for k in keys] + [weights[k] for k in keys], dtype=torch.float64,
                              device=device)
        torch.distributed.all_reduce(summed)
        totals = dict(zip(keys, summed[: len(keys)].tolist(), strict=True))
        weights = dict(zip(keys, summed[len(keys):].tolist(), strict=True))
    return {k: v / weights[k] for k, v in totals.items()}


def _evaluate_once(steps: Any, model: nn.Module, eval_data: tuple[torch.Tensor, torch.Tensor], main: bool
                   ) -> dict[str, float]:
    """The held-out figures, computed by the main process only and shared with the others under torchrun
    (every process needs them: early stopping reads them)."""
    figures = steps.evaluate(model, *eval_data) if main else None
    if distributed.is_initialized():
        figures = distributed.all_gather_objects(figures)[0]
    assert figures is not None
    return figures
