"""Shared fixtures: the real MNIST splits (loaded once per session) and small fixed subsets of them.

The tensors are shared between tests: never modify them in place.
"""

from __future__ import annotations

import pytest
import torch

from alva.data import fixed_subset, load_mnist


@pytest.fixture(scope="session")
def mnist_test() -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST test split (10000 images), checked against its SHA-256."""
    return load_mnist("test", download=False)


@pytest.fixture(scope="session")
def mnist_train() -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST training split (60000 images), checked against its SHA-256."""
    return load_mnist("train", download=False)


@pytest.fixture(scope="session")
def test_subset(mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    """1000 test images, 100 per class, the same in every session (seed 0)."""
    return fixed_subset(*mnist_test, 1000, seed=0)


@pytest.fixture(scope="session")
def train_subset(mnist_train) -> tuple[torch.Tensor, torch.Tensor]:
    """2000 training images, 200 per class, the same in every session (seed 0)."""
    return fixed_subset(*mnist_train, 2000, seed=0)
