"""The Frechet distance between fitted Gaussians: zero for identical sets, symmetric, and the closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alva.evaluation.generative import frechet_distance


def _sample(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).multivariate_normal(mean, cov, size=n)


def test_identical_sets_are_at_distance_zero():
    feats = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)


def test_different_sets_are_positive_and_symmetric():
    a = torch.randn(400, 6, generator=torch.Generator().manual_seed(1))
    b = 1.5 * torch.randn(400, 6, generator=torch.Generator().manual_seed(2)) + 0.3
    d_ab, d_ba = frechet_distance(a, b), frechet_distance(b, a)
    assert d_ab > 0.1
    assert d_ab == pytest.approx(d_ba, rel=1e-8)


def test_matches_the_closed_form_for_known_gaussians():
    # Diagonal covariances commute: d = |mu_a - mu_b|^2 + sum (sqrt(s_a) - sqrt(s_b))^2.
    mu_a, mu_b = np.array([0.0, 1.0, -1.0]), np.array([1.0, 1.0, 2.0])
    var_a, var_b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()
    a = _sample(mu_a, np.diag(var_a), 200_000, 0)
    b = _sample(mu_b, np.diag(var_b), 200_000, 1)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_matches_the_closed_form_with_full_covariances():
    rng = np.random.default_rng(3)
    m = rng.normal(size=(4, 4))
    cov_a = m @ m.T + np.eye(4)
    cov_b = np.diag([1.0, 2.0, 3.0, 4.0])
    # tr((S_a S_b)^(1/2)) from the eigenvalues of S_a S_b (real and positive for two SPD matrices).
    cross = np.sqrt(np.linalg.eigvals(cov_a @ cov_b).real).sum()
    expected = 4.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * cross
    a = _sample(np.zeros(4), cov_a, 200_000, 4)
    b = _sample(np.ones(4), cov_b, 200_000, 5)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.03)


def test_rejects_mismatched_dimensions():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
