""""Rubbish class" inputs (Goodfellow, Shlens and Szegedy 2015, section 8 and appendix): how often a classifier
gives Gaussian noise, which shows no digit at all, a confident label."""

from __future__ import annotations

import torch
from torch import nn

from alva.attacks.base import input_shape


def gaussian_noise(n: int, shape: tuple[int, ...], mean: float = 0.5, std: float = 0.5,
                   seed: int = 0) -> torch.Tensor:
    """``n`` images of i.i.d. Gaussian pixels ``N(mean, std^2)``, clipped to [0, 1], reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return (mean + std * torch.randn(n, *shape, generator=generator)).clamp_(0, 1)


@torch.no_grad()
def rubbish_rate(model: nn.Module, n: int = 10_000, confidence: float = 0.5, shape: tuple[int, ...] | None = None,
                 mean: float = 0.5, std: float = 0.5, seed: int = 0, batch_size: int = 1000
                 ) -> dict[str, float | str]:
    """The share of ``n`` Gaussian-noise images that ``model`` puts in some class with softmax probability of at
    least ``confidence``, and their mean top probability. The images have ``shape`` (default: the input shape on
    the model's card). The model is evaluated in eval mode and restored."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    shape = input_shape(model, shape)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        top = torch.cat([model(xb.to(device)).softmax(1).amax(1).cpu()
                         for xb in gaussian_noise(n, shape, mean, std, seed).split(batch_size)])
    finally:
        model.train(was_training)
    return {"rubbish_rate": (top >= confidence).float().mean().item(), "mean_top_probability": top.mean().item(),
            "confidence": confidence, "n": n, "noise": f"N({mean}, {std}^2) clipped to [0, 1]"}
