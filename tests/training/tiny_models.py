"""A tiny conditional generator shared by the generation tests and the torchrun worker."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from alva.models.generative import ConditionalGenerativeModel


class TinyConditional(ConditionalGenerativeModel):
    latent_shape = (8,)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(18, 784), nn.Sigmoid())

    def forward(self, z, y):
        return self.net(torch.cat([z, F.one_hot(y, 10).float()], 1)).view(-1, 1, 28, 28)
