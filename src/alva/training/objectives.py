"""Training objectives: the part of the one training loop (:func:`alva.training.loop.fit`) that a recipe replaces.

An :class:`Objective` maps a model and a batch to the loss to minimise and a few numbers to log, and says how
the model is evaluated after every epoch (accuracy for classifiers, mAP and friends for multi-label ones); the
loop owns the optimiser. A :class:`ManualObjective` owns its networks and optimisers and takes its own steps
(GANs, AdvGAN, AT-GAN), as a LightningModule with manual optimisation does; the loop still owns the epochs,
seeding, checkpoints, resume, logs and sample grids.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alva.evaluation.accuracy import accuracy, predict_logits
from alva.evaluation.multilabel import multilabel_summary
from alva.training.multilabel import asymmetric_loss, check_asymmetric, multilabel_bce


class Objective:
    """Base class. ``__call__`` returns ``(loss, metrics)``; metrics are plain floats for the progress bar."""

    name = "objective"
    task = "multiclass"  # what the labels are: "multiclass" (int64 class per sample) or "multilabel" (N x L 0/1)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based), for schedules such as an eps ramp."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings that identify this objective in a run's config and a model's card."""
        return {"name": self.name}

    def state(self) -> dict:
        """What the objective learned during training (e.g. a guard's best figure), saved in checkpoints."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` on resume."""

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """Numbers for held-out data, logged after every epoch; by default the clean accuracy."""
        return {"clean_acc": accuracy(model, x, y)}


class Standard(Objective):
    """Empirical risk minimisation: cross-entropy on clean inputs."""

    name = "standard"

    def __call__(self, model, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item()}


class MultiLabel(Objective):
    """Base of the multi-label objectives: targets are N x L multi-hot, one logit per label.

    The progress bar shows the loss and the exact-match rate (every label right at probability 0.5);
    :meth:`evaluate` gives mAP, exact match, macro F1 and Hamming accuracy.
    """

    task = "multilabel"

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, model, x, y):
        logits = model(x)
        loss = self.loss(logits, y)
        exact = ((logits > 0) == (y > 0.5)).all(1).float().mean().item()
        return loss, {"loss": loss.item(), "exact_match": exact}

    def evaluate(self, model, x, y):
        return multilabel_summary(predict_logits(model, x), y)


class MultiLabelBCE(MultiLabel):
    """Binary cross-entropy per label, summed over labels and averaged over the batch."""

    name = "bce"

    def loss(self, logits, y):
        return multilabel_bce(logits, y)


class AsymmetricLoss(MultiLabel):
    """The asymmetric loss of Ridnik et al. 2021 (ASL), summed over labels and averaged over the batch."""

    name = "asl"

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05) -> None:
        check_asymmetric(gamma_neg, gamma_pos, clip)
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    def loss(self, logits, y):
        return asymmetric_loss(logits, y, self.gamma_neg, self.gamma_pos, self.clip)

    def describe(self):
        return {"name": self.name, "gamma_neg": self.gamma_neg, "gamma_pos": self.gamma_pos, "clip": self.clip}


class ManualObjective:
    """An objective that owns its networks and optimisers and takes its own optimiser steps.

    :func:`~alva.training.loop.fit` calls :meth:`setup` once; then, inside :meth:`running`, for every epoch
    (after seeding the global generator with :func:`~alva.training.loop.epoch_seed`): :meth:`start_epoch`,
    :meth:`training_step` for each batch of :meth:`batches`, and :meth:`end_epoch`, whose entries join the epoch's
    record. After every epoch the checkpoint holds :meth:`state_dict`, the states of its :meth:`parts` (restored
    on resume by :meth:`load_state_dict`), and :meth:`describe`, which a resumed run must match;
    :meth:`sample_grid` is saved as ``samples/epoch_NNN.png``. ``may_change`` names the
    :class:`~alva.training.loop.TrainSettings` fields that may differ on resume (``"epochs"`` to train on).
    """

    name = "manual"
    may_change: tuple[str, ...] = ()
    drop_last = False  # the loader drops a last incomplete batch
    train_time_s = 0.0  # training time over all runs of a resumed training, set by the loop

    def setup(self, model: nn.Module, train_data: tuple[torch.Tensor, torch.Tensor] | None, settings: Any,
              device: torch.device) -> None:
        """Build the optimisers (and move the owned networks to ``device``) before the first epoch."""

    def running(self):
        """A context manager around all epochs (e.g. frozen models in attack mode)."""
        import contextlib

        return contextlib.nullcontext()

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based): set the train/eval modes of the networks."""

    def batches(self, train_data: tuple[torch.Tensor, torch.Tensor] | None, settings: Any, epoch: int
                ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's batches: by default the training data shuffled by ``(settings.seed, epoch)``."""
        from alva.data.loaders import make_loader

        if train_data is None:
            raise ValueError(f"objective {self.name!r} needs training data")
        return make_loader(*train_data, settings.batch_size, shuffle=True, seed=settings.seed, epoch=epoch,
                           drop_last=self.drop_last)

    def training_step(self, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[dict[str, float], float]:
        """One step on a batch: the numbers to log and their weight in the epoch's means."""
        raise NotImplementedError

    def end_epoch(self, model: nn.Module, epoch: int) -> dict[str, Any]:
        """Entries for the epoch's record after its last step (e.g. a monitor's figures)."""
        return {}

    def sample_grid(self, model: nn.Module, epoch: int) -> tuple[torch.Tensor, str] | None:
        """A ``C x H x W`` image grid in [0, 1] and its title, saved after every epoch; None: none."""
        return None

    def parts(self) -> dict[str, Any]:
        """The networks and optimisers the objective trains, by their checkpoint key (anything with
        ``state_dict`` and ``load_state_dict``)."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The state of every part, as top-level checkpoint entries."""
        return {key: part.state_dict() for key, part in self.parts().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, part in self.parts().items():
            part.load_state_dict(state[key])

    def describe(self) -> dict:
        """Settings that identify this objective; a resumed run must have the same."""
        return {"name": self.name}

    def evaluate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        return {"clean_acc": accuracy(model, x, y)}

    def lower_learning_rate(self, factor: float) -> None:
        """Multiply the learning rate by ``factor`` for the rest of the run, after a collapse that its ``check``
        saw (``TrainSettings.collapse_lr_factor``); only steps with such a check need it."""
        raise NotImplementedError(f"{self.name} has no learning rate to lower")


def check_finite(loss: torch.Tensor, what: str, epoch: int, batch: int) -> None:
    """Raise :class:`TrainingDiverged` when ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"{what} is {loss.item()} at epoch {epoch + 1}, batch {batch + 1}: lower the lr")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""
