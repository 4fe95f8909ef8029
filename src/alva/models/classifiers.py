"""Image classifiers, each returning logits, built by name with :func:`create`.

:data:`ARCHITECTURES` gives each name with its layers and the paper it follows. The first seven were made for
MNIST-sized inputs (``cnn-gmp`` for multi-label MNIST grids); the residual networks (:mod:`alva.models.resnet`,
:mod:`alva.models.wide_resnet`) are the CIFAR-style networks of the robustness literature and take any input size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from alva.models.resnet import preact_resnet18, resnet18
from alva.models.wide_resnet import wrn_28_10, wrn_34_10
from alva.models.wrapper import Normalized

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)


class Maxout(nn.Module):
    """A linear layer whose ``pieces`` outputs per unit are reduced by max (Goodfellow et al. 2013)."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.out_features, self.pieces).amax(dim=2)


def softmax_regression(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = in_shape
    return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


def mlp(in_shape: tuple[int, int, int], num_classes: int, hidden: int = 256) -> nn.Module:
    c, h, w = in_shape
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(c * h * w, hidden), nn.ReLU(),
        nn.Linear(hidden, hidden), nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def maxout(in_shape: tuple[int, int, int], num_classes: int, units: int = 240, pieces: int = 5,
           dropout: float = 0.2) -> nn.Module:
    c, h, w = in_shape
    return nn.Sequential(
        nn.Flatten(), nn.Dropout(dropout),
        Maxout(c * h * w, units, pieces), nn.Dropout(dropout),
        Maxout(units, units, pieces), nn.Dropout(dropout),
        nn.Linear(units, num_classes),
    )


def cnn_small(in_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, int, int] = (16, 32, 100)
              ) -> nn.Module:
    c, h, w = in_shape
    w1, w2, fc = widths
    return nn.Sequential(
        nn.Conv2d(c, w1, 4, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(w1, w2, 4, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(w2 * (h // 4) * (w // 4), fc), nn.ReLU(),
        nn.Linear(fc, num_classes),
    )


def cnn_wide(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``cnn-small`` with twice the channels and an fc layer of 256: about 4x its multiply-adds. Capacity buys
    robustness under adversarial training (Madry et al. 2018, section 4)."""
    return cnn_small(in_shape, num_classes, widths=(32, 64, 256))


def cnn_large(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """``cnn-small`` with three times the channels and an fc layer of 384: about 2.2x the multiply-adds of
    ``cnn-wide``, the next step on Madry et al.'s (2018) capacity scale that fits an hour of CPU training."""
    return cnn_small(in_shape, num_classes, widths=(48, 96, 384))


def cnn(in_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    c, h, w = in_shape
    return nn.Sequential(
        nn.Conv2d(c, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (h // 4) * (w // 4), 1024), nn.ReLU(),
        nn.Linear(1024, num_classes),
    )


def cnn_gmp(in_shape: tuple[int, int, int], num_classes: int, widths: tuple[int, int, int, int] = (16, 32, 64, 64)
            ) -> nn.Module:
    """Four 3x3 conv layers (16, 32, 64, 64 channels; 2x2 max-pooling after the first three), global
    max-pooling over positions, then one linear layer: each label's logit reads the strongest evidence
    anywhere in the image.

    Made for multi-label MNIST (``alva.data.make_multilabel_mnist``): the max over positions lets the same
    filters find a digit in any cell of the 2 x 2 grid (the last layer's receptive field, 38 pixels, covers a
    28 x 28 digit), as in multiple-instance learning. On 56 x 56 inputs: about 4x the multiply-adds of
    ``cnn-small``, 10x fewer weights (61 k against 637 k). It takes any input of at least 8 x 8 pixels.
    """
    c = in_shape[0]
    w1, w2, w3, w4 = widths
    return nn.Sequential(
        nn.Conv2d(c, w1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w1, w2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w2, w3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(w3, w4, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        nn.Linear(w4, num_classes),
    )


@dataclass(frozen=True)
class Architecture:
    build: Callable[..., nn.Module]
    normalize: bool  # whether single-channel inputs are standardised with the MNIST statistics by default
    summary: str
    # Weights in channels-last layout: only where it measured faster on CPU (benchmarks/memory_format.py);
    # the inputs stay as they are, and saved weights are written contiguous.
    channels_last: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    "softmax": Architecture(softmax_regression, False, "multinomial logistic regression on raw pixels "
                            "(Goodfellow et al. 2015, section 4)"),
    "mlp": Architecture(mlp, True, "MLP 784-256-256-10, ReLU"),
    "maxout": Architecture(maxout, True, "two maxout layers (240 units, 5 pieces), dropout 0.2: the "
                           "permutation-invariant MNIST network of Goodfellow et al. 2013"),
    "cnn-small": Architecture(cnn_small, True, "conv16-4x4/2, conv32-4x4/2, fc100 (Wong et al. 2020; the small "
                              "MNIST model of Wong and Kolter 2018)"),
    "cnn-wide": Architecture(cnn_wide, True, "conv32-4x4/2, conv64-4x4/2, fc256 (cnn-small, wider)"),
    "cnn-large": Architecture(cnn_large, True, "conv48-4x4/2, conv96-4x4/2, fc384 (cnn-small, 3x the channels)"),
    "cnn": Architecture(cnn, True, "conv32-5x5, pool, conv64-5x5, pool, fc1024 (Madry et al. 2018)"),
    "cnn-gmp": Architecture(cnn_gmp, True, "conv16/32/64/64-3x3 with pooling, global max-pool, linear (multi-label)",
                            channels_last=True),
    "resnet18": Architecture(resnet18, False, "ResNet-18, CIFAR variant: 3x3 stem, no max-pool (He et al. 2016)"),
    "preact-resnet18": Architecture(preact_resnet18, False, "pre-activation ResNet-18 (He et al. 2016; Rice et al. "
                                    "2020)"),
    "wrn-28-10": Architecture(wrn_28_10, False, "wide ResNet, depth 28, width 10 (Zagoruyko and Komodakis 2016)"),
    "wrn-34-10": Architecture(wrn_34_10, False, "wide ResNet, depth 34, width 10 (Madry et al. 2018; TRADES)"),
}


def create(name: str, *, num_classes: int = 10, in_shape: tuple[int, int, int] = (1, 28, 28),
           mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> Normalized:
    """A freshly initialised classifier ``name`` wrapped with its input normalisation.

    ``mean``/``std`` default to the MNIST statistics for single-channel inputs of the MNIST architectures
    that standardise their input, and to the identity otherwise: for ``softmax`` (raw pixels, as in the FGSM
    paper), for the residual networks (their batch norm standardises) and for inputs of other channel counts.
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}")
    arch = ARCHITECTURES[name]
    if mean is None or std is None:
        mnist = arch.normalize and in_shape[0] == 1
        mean, std = (MNIST_MEAN, MNIST_STD) if mnist else ((0.0,) * in_shape[0], (1.0,) * in_shape[0])
    if len(mean) not in (1, in_shape[0]):
        raise ValueError(f"mean and std have {len(mean)} values but the images have {in_shape[0]} channel(s)")
    model = Normalized(arch.build(tuple(in_shape), num_classes), mean, std)
    if arch.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs omit it
    # What rebuilds this model from a weights file (see alva.models.zoo.architecture_card).
    model.spec = {"architecture": name, "num_classes": num_classes, "in_shape": list(in_shape)}
    return model
