"""Normalisation inside the model, so that attacks always see images in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class Normalized(nn.Module):
    """``net((x - mean) / std)`` for images ``x`` in [0, 1]; mean and std are per channel.

    The statistics are buffers, so they travel with the weights and the device. A model made or loaded by
    :mod:`alva.models` also carries ``spec`` (what rebuilds it) and, once loaded, ``card``.
    """

    mean: torch.Tensor
    std: torch.Tensor
    spec: dict[str, Any]
    card: dict[str, Any]

    def __init__(self, net: nn.Module, mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels but std has {len(std)}")
        if not all(math.isfinite(v) for v in (*mean, *std)):
            raise ValueError(f"mean and std must be finite, got {tuple(mean)} and {tuple(std)}")
        if any(s <= 0 for s in std):
            raise ValueError(f"std must be positive, got {tuple(std)}")
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
