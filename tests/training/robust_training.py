"""What the adversarial-training tests share: a short cnn-small training and the PGD robust accuracy."""

from __future__ import annotations

import torch

from alva.attacks import PGD
from alva.models import create
from alva.training import TrainSettings, fit

EPS = 0.1


def train_cnn_small(objective, data, epochs=4, seed=0, **fit_options):
    """cnn-small trained on ``data`` with ``objective`` (batch 64, lr 2e-3), in eval mode; ``fit_options`` go
    to :func:`alva.training.fit` (``out``, ``resume``, ``on_epoch_end``)."""
    torch.manual_seed(seed)
    model = create("cnn-small")
    fit(model, data, TrainSettings(epochs=epochs, batch_size=64, lr=2e-3, seed=seed), objective=objective,
        progress=False, **fit_options)
    return model.eval()


def robust_accuracy(model, x, y, eps=EPS):
    """Accuracy under PGD-10 (seeded) at ``eps``."""
    return 1 - PGD(model, eps=eps, steps=10, seed=0)(x, y).success.float().mean().item()
