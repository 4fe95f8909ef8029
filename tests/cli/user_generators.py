"""A user's own generators, as ``--generator FILE.py:FUNCTION`` imports them: a tiny conditional generator of
3 x 32 x 32 images, and one of 1 x 16 x 16 images that fits no 3 x 32 x 32 classifier."""

from __future__ import annotations

import torch
from torch import nn

from alva.models.generative import ConditionalGenerativeModel


class TinyConditional(ConditionalGenerativeModel):
    """z (8 numbers) and a class -> a C x S x S image in [0, 1] through one linear layer and an upsampling."""

    def __init__(self, channels: int = 3, size: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        self.latent_shape = (8,)
        self.num_classes = num_classes
        self.channels, self.size = channels, size
        self.embed = nn.Embedding(num_classes, 8)
        self.project = nn.Linear(16, channels * 8 * 8)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, self.embed(y)], 1)).view(len(z), self.channels, 8, 8)
        return torch.sigmoid(nn.functional.interpolate(h, size=(self.size, self.size), mode="nearest"))


def build(num_classes: int = 10) -> nn.Module:
    torch.manual_seed(0)
    return TinyConditional(3, 32, num_classes)


def small_grey() -> nn.Module:
    torch.manual_seed(0)
    return TinyConditional(1, 16)
