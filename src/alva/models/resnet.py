"""Residual networks for small images, as used throughout the adversarial-robustness literature: ResNet-18 of
He et al. 2016 ("Deep Residual Learning for Image Recognition") in its CIFAR form (a 3x3 stem of stride 1, no
max-pooling, four stages of two blocks of 64, 128, 256, 512 channels), and its pre-activation version (He et al.
2016, "Identity Mappings in Deep Residual Networks"), the network of Wong et al. 2020 ("Fast is better than
free") and Rice et al. 2020 ("Overfitting in adversarially robust deep learning"). Both end with adaptive average
pooling: they take any input of at least 8 x 8 pixels and any number of channels.
"""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def projection(in_channels: int, out_channels: int, stride: int) -> nn.Conv2d | None:
    """The 1x1 convolution a shortcut needs when a block changes the width or resolution, else None."""
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm after each; ReLU after the sum with the shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        self.conv2, self.bn2 = conv3x3(out_channels, out_channels), nn.BatchNorm2d(out_channels)
        conv = projection(in_channels, out_channels, stride)
        self.shortcut = nn.Sequential() if conv is None else nn.Sequential(conv, nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Batch norm and ReLU before each of two 3x3 convolutions; the shortcut adds the block's input, or its
    pre-activation through a 1x1 convolution when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(in_channels), conv3x3(in_channels, out_channels, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(out_channels), conv3x3(out_channels, out_channels)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = torch.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(pre)
        out = self.conv1(pre)
        return self.conv2(torch.relu(self.bn2(out))) + skip


class ResNet(nn.Module):
    """A 3x3 stem, four stages of residual blocks (the first of each stage but the first halves the
    resolution), adaptive average pooling and a linear layer."""

    def __init__(self, block: type[BasicBlock] | type[PreActBlock], blocks: tuple[int, ...], in_channels: int,
                 num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.preact = block is PreActBlock
        self.stem = conv3x3(in_channels, width)
        self.stem_bn = nn.Identity() if self.preact else nn.BatchNorm2d(width)
        stages, channels = [], width
        for i, count in enumerate(blocks):
            out_channels = width * 2 ** i
            for j in range(count):
                stages.append(block(channels, out_channels, 2 if i > 0 and j == 0 else 1))
                channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.final_bn = nn.BatchNorm2d(channels) if self.preact else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stem(x)
        if not self.preact:
            out = torch.relu(self.stem_bn(out))
        out = self.stages(out)
        if self.preact:
            out = torch.relu(self.final_bn(out))
        return self.fc(self.pool(out).flatten(1))


def resnet18(in_shape: tuple[int, int, int], num_classes: int, width: int = 64) -> nn.Module:
    """ResNet-18, CIFAR variant (He et al. 2016); ``width`` is the first stage's channel count (64 in the paper)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_shape[0], num_classes, width)


def preact_resnet18(in_shape: tuple[int, int, int], num_classes: int, width: int = 64) -> nn.Module:
    """Pre-activation ResNet-18 (He et al. 2016, "Identity Mappings"; as in Wong et al. 2020 and Rice et al. 2020)."""
    return ResNet(PreActBlock, (2, 2, 2, 2), in_shape[0], num_classes, width)
