"""Training objectives: the part of the training loop that later recipes (adversarial training) replace.

An objective maps a model and a batch to the loss to minimise and a few numbers to log, and says how
the model is evaluated after every epoch (accuracy for classifiers, mAP and friends for multi-label ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alva.evaluation.accuracy import accuracy, predict_logits
from alva.evaluation.multilabel import multilabel_summary
from alva.training.multilabel import asymmetric_loss, multilabel_bce


class Objective:
    """Base class. ``__call__`` returns ``(loss, metrics)``; metrics are plain floats for the progress bar."""

    name = "objective"
    task = "multiclass"  # what the labels are: "multiclass" (int64 class per sample) or "multilabel" (N x L 0/1)
    headline = "clean_acc"  # the key of :meth:`evaluate` to report first

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
    headline = "map"

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
        if gamma_neg < 0 or gamma_pos < 0:
            raise ValueError(f"gammas must be >= 0, got gamma_neg={gamma_neg}, gamma_pos={gamma_pos}")
        if not 0 <= clip < 1:
            raise ValueError(f"clip must be in [0, 1), got {clip}")
        self.gamma_neg, self.gamma_pos, self.clip = float(gamma_neg), float(gamma_pos), float(clip)

    def loss(self, logits, y):
        return asymmetric_loss(logits, y, self.gamma_neg, self.gamma_pos, self.clip)

    def describe(self):
        return {"name": self.name, "gamma_neg": self.gamma_neg, "gamma_pos": self.gamma_pos, "clip": self.clip}


OBJECTIVES: dict[str, type[Objective]] = {"standard": Standard, "bce": MultiLabelBCE, "asl": AsymmetricLoss}


def get_objective(name: str | Objective, **settings) -> Objective:
    """The objective called ``name``, built with ``settings``; an :class:`Objective` is returned as it is."""
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown training objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)
