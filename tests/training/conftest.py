"""Training tests run torch on one thread: the models and batches here are too small to gain from more,
and on a busy machine competing intra-op threads make them many times slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
