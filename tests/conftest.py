"""Shared fixtures: the real MNIST splits (loaded once per session) and small fixed subsets of them.

The tensors are shared between tests: never modify them in place.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import alva.models
from alva.data import fixed_subset, load_mnist


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Every test module runs torch on one thread, restored after: the models and batches here are too small to
    gain from more, and on a busy machine competing intra-op threads make them many times slower. The commands
    that the tests run (in this process or another) take one thread from ``ALVA_THREADS``."""
    before, variable = torch.get_num_threads(), os.environ.get("ALVA_THREADS")
    torch.set_num_threads(1)
    os.environ["ALVA_THREADS"] = "1"
    yield
    torch.set_num_threads(before)
    if variable is None:
        os.environ.pop("ALVA_THREADS", None)
    else:
        os.environ["ALVA_THREADS"] = variable


@pytest.fixture(scope="session")
def cnn_small() -> torch.nn.Module:
    """The shipped ``mnist/cnn-small`` in eval mode (shared: do not change its mode or flags)."""
    return alva.models.load("mnist/cnn-small")


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


@pytest.fixture(scope="session")
def torchrun():
    """``torchrun(*args, timeout=...)``: run ``torch.distributed.run --standalone --nproc_per_node 2 *args`` (two
    gloo processes, one thread each) and fail the test with the end of its output if it fails."""
    def run(*args: str, timeout: int = 600) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        env.pop("WORLD_SIZE", None)
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return run
