"""Quality of generators, measured with a classifier of the zoo (the "oracle").

- :func:`label_agreement`: how often the oracle labels ``G(z, y)`` as ``y`` (the class-consistency check of
  AC-GAN, Odena et al. 2017).
- :func:`frechet_distance`: the Frechet distance between Gaussians fitted to two feature sets (the formula of
  FID, Heusel et al. 2017). On MNIST alva computes it on an oracle's penultimate-layer features and calls it
  "Frechet distance on <oracle> features", not FID, which means Inception features.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from alva.models.generative import draw_labels, draw_noise, is_conditional


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """The square root of a symmetric positive semi-definite matrix by eigen-decomposition."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(feats_a: torch.Tensor | np.ndarray, feats_b: torch.Tensor | np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` for Gaussians fitted to two ``N x D`` feature sets.

    ``tr((S_a S_b)^(1/2))`` is computed as ``tr((A S_b A)^(1/2))`` with ``A = S_a^(1/2)``: the same eigenvalues,
    but of a symmetric matrix, so the eigen-decomposition is stable. Float64 throughout.
    """
    a = np.asarray(feats_a.detach().cpu() if isinstance(feats_a, torch.Tensor) else feats_a, dtype=np.float64)
    b = np.asarray(feats_b.detach().cpu() if isinstance(feats_b, torch.Tensor) else feats_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two N x D feature sets with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError("need at least two samples per set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(cross))
    return max(value, 0.0)


def penultimate_features(classifier: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The input of the last layer of a zoo classifier (``Normalized`` around an ``nn.Sequential``)."""
    net = getattr(classifier, "net", None)
    if not isinstance(net, nn.Sequential):
        raise ValueError("penultimate_features needs a zoo classifier: Normalized around an nn.Sequential")
    body = net[:-1]
    device = classifier.mean.device
    with torch.no_grad():
        return torch.cat([body((xb.to(device) - classifier.mean) / classifier.std).flatten(1).cpu()
                          for xb in x.split(batch_size)])


def generate(generator: nn.Module, n: int, seed: int, batch_size: int = 1000
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` samples (and their conditioning labels, or None) from a seeded draw; the generator in eval mode."""
    z = draw_noise(generator, n, seed=seed)
    labels = draw_labels(generator, n, seed=seed + 1) if is_conditional(generator) else None
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        if labels is None:
            images = torch.cat([generator(zb) for zb in z.split(batch_size)])
        else:
            pairs = zip(z.split(batch_size), labels.split(batch_size), strict=True)
            images = torch.cat([generator(zb, yb) for zb, yb in pairs])
    generator.train(was_training)
    return images.cpu(), None if labels is None else labels.cpu()


def oracle_labels(oracle: nn.Module, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    device = next(oracle.parameters()).device
    with torch.no_grad():
        return torch.cat([oracle(xb.to(device)).argmax(1).cpu() for xb in images.split(batch_size)])


def label_agreement(generator: nn.Module, oracle: nn.Module, n: int = 10_000, seed: int = 0) -> float:
    """The share of ``n`` samples ``G(z, y)`` that ``oracle`` labels ``y`` (conditional generators only)."""
    if not is_conditional(generator):
        raise ValueError("label agreement needs a conditional generator")
    images, labels = generate(generator, n, seed)
    if labels is None:
        raise ValueError("the generator drew no labels")
    return (oracle_labels(oracle, images) == labels).float().mean().item()


def class_histogram(generator: nn.Module, oracle: nn.Module, n: int = 10_000, seed: int = 0,
                    num_classes: int = 10) -> list[float]:
    """The share of ``n`` samples the oracle puts in each class."""
    images, _ = generate(generator, n, seed)
    counts = torch.bincount(oracle_labels(oracle, images), minlength=num_classes)
    return (counts.float() / n).tolist()


def generator_frechet(generator: nn.Module, oracle: nn.Module, real: torch.Tensor, n: int = 10_000,
                      seed: int = 0) -> float:
    """Frechet distance on the oracle's penultimate features between ``real`` images and ``n`` generated ones."""
    images, _ = generate(generator, n, seed)
    return frechet_distance(penultimate_features(oracle, real), penultimate_features(oracle, images))
