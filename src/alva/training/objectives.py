"""Training objectives: the part of the training loop that later recipes (adversarial training) replace.

An objective maps a model and a batch to the loss to minimise and a few numbers to log.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Objective:
    """Base class. ``__call__`` returns ``(loss, metrics)``; metrics are plain floats for the progress bar."""

    name = "objective"

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (0-based), for schedules such as an eps ramp."""

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def describe(self) -> dict:
        """Settings that identify this objective in a run's config and a model's card."""
        return {"name": self.name}


class Standard(Objective):
    """Empirical risk minimisation: cross-entropy on clean inputs."""

    name = "standard"

    def __call__(self, model, x, y):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss": loss.item(), "acc": (logits.argmax(1) == y).float().mean().item()}


OBJECTIVES: dict[str, type[Objective]] = {"standard": Standard}


def get_objective(name: str | Objective, **settings) -> Objective:
    """The objective called ``name``, built with ``settings``; an :class:`Objective` is returned as it is."""
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown training objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)
