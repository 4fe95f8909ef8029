"""Batched predictions and clean accuracy."""

from __future__ import annotations

import torch
from torch import nn

from alva.attacks.base import attack_mode


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode (the model's modes are restored after)."""
    device = next(model.parameters()).device
    with attack_mode(model), torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``x`` that ``model`` classifies as ``y``."""
    return (predict_logits(model, x, batch_size).argmax(1) == y.cpu()).float().mean().item()
