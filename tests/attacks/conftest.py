"""Fixtures for the attack tests: a small real MNIST batch and the shipped softmax model (``cnn_small`` is in
the root conftest).

Shared objects: never modify the tensors in place, and never change a shared model (tests that
change a model's mode or flags load their own copy with ``load_zoo``).
"""

from __future__ import annotations

import pytest
import torch

import alva.models
from alva.data import fixed_subset


@pytest.fixture(scope="session")
def attack_batch(mnist_test) -> tuple[torch.Tensor, torch.Tensor]:
    """200 MNIST test images (20 per class, seed 0) to attack."""
    return fixed_subset(*mnist_test, 200, seed=0)


@pytest.fixture(scope="session")
def softmax_model() -> torch.nn.Module:
    """The shipped ``mnist/softmax`` in eval mode (shared: do not change its mode or flags)."""
    return alva.models.load("mnist/softmax")


@pytest.fixture
def load_zoo():
    """A fresh copy of a shipped model, for tests that change its mode or flags."""
    return alva.models.load

