"""Wide residual networks (Zagoruyko and Komodakis 2016, "Wide Residual Networks").

``WRN-d-k`` has a 3x3 stem of 16 channels and three groups of ``(d - 4) / 6`` pre-activation blocks of
``16k``, ``32k`` and ``64k`` channels (the second and third groups start at stride 2), then batch norm, ReLU,
adaptive average pooling and a linear layer. WRN-34-10 is the CIFAR-10 model of Madry et al. 2018 and of
TRADES (Zhang et al. 2019); WRN-28-10 that of many later robust-training papers. When a block changes the
width, its shortcut is a 1x1 convolution of the block's pre-activation.
"""

from __future__ import annotations

import torch
from torch import nn

from alva.models.resnet import PreActBlock, conv3x3


class WideResNet(nn.Module):
    """``WRN-depth-widen`` for inputs of ``in_channels`` channels and any size of at least 4 x 4 pixels."""

    def __init__(self, depth: int, widen: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"a wide ResNet has depth 6n + 4 (n >= 1), got {depth}")
        per_group = (depth - 4) // 6
        widths = (16 * widen, 32 * widen, 64 * widen)
        self.stem = conv3x3(in_channels, 16)
        blocks, channels = [], 16
        for i, out_channels in enumerate(widths):
            for j in range(per_group):
                blocks.append(PreActBlock(channels, out_channels, 2 if i > 0 and j == 0 else 1))
                channels = out_channels
        self.groups = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.groups(self.stem(x)))


def wrn_28_10(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """WRN-28-10 (Zagoruyko and Komodakis 2016)."""
    return WideResNet(28, 10, in_shape[0], num_classes)


def wrn_34_10(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """WRN-34-10 (Zagoruyko and Komodakis 2016; Madry et al. 2018, Zhang et al. 2019)."""
    return WideResNet(34, 10, in_shape[0], num_classes)
