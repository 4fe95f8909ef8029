"""The image sets of a fake-class run: the two disjoint halves of the training images, the fixed evaluation
subsets, the images each round generates (saved per round) and the training data of a round."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from safetensors.torch import save as save_safetensors

from alva.data import fixed_subset
from alva.tracking.files import atomic_write_bytes
from alva.training.fakeclass.settings import FakeClassSettings

SPLIT_SEED = 0  # the two disjoint halves of the training images (not the run's seed: the halves never move)
REAL_QUERIES = 500  # real test images whose distance to the nearest training image is the OOD proxy's yardstick


def split_halves(x: torch.Tensor, y: torch.Tensor, seed: int = SPLIT_SEED
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Two disjoint halves of ``(x, y)`` by a fixed random permutation, each in the original order: the
    first trains the fake-class network, the second the reference network of metric 6."""
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    a, b = perm[: len(x) // 2].sort().values, perm[len(x) // 2:].sort().values
    return (x[a], y[a]), (x[b], y[b])


def subset(data: tuple[torch.Tensor, torch.Tensor], n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``data`` when ``n`` is None or not smaller, else a fixed stratified subset of ``n``."""
    return data if n is None or n >= len(data[0]) else fixed_subset(*data, n, seed=seed)


def sample(x: torch.Tensor, t: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All of ``(x, t)`` when at most ``n``, else ``n`` of them drawn with ``seed`` (in their order)."""
    if len(x) <= n:
        return x, t
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return x[rows], t[rows]


def cat(parts: list[torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return torch.cat(parts) if parts else like[:0]


@dataclass
class RoundData:
    """The successful images of one round's generation (``t_*``: their real target class ``k``)."""

    x_train: torch.Tensor
    t_train: torch.Tensor
    x_test: torch.Tensor
    t_test: torch.Tensor
    x_de: torch.Tensor
    t_de: torch.Tensor

    def save(self, path: Path) -> None:
        tensors = {k: v.detach().cpu().contiguous() for k, v in asdict(self).items()}
        atomic_write_bytes(path, save_safetensors(tensors))

    @classmethod
    def load(cls, path: Path) -> RoundData:
        return cls(**load_file(str(path)))


class RunData:
    """The fixed image sets of a run: ``real`` (first half of ``train``, ``train_size`` of it) trains the
    network, ``half_b`` (the other half) the reference network; ``eval_train`` and ``eval_test`` measure real
    accuracy (metrics 9 and 10); ``pool`` is searched for nearest neighbours and ``queries`` are the real test
    images of metric 1's yardstick."""

    def __init__(self, settings: FakeClassSettings, train: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor]) -> None:
        s = settings
        half_a, half_b = split_halves(*train)
        self.real = subset(half_a, s.train_size, s.seed)
        self.half_b = subset(half_b, s.reference.size, s.seed)
        self.eval_train = subset(self.real, s.eval_train_size, s.seed)
        self.eval_test = subset(test, s.eval_test_size, s.seed)
        self.pool, self.pool_y = subset(self.real, s.nn_pool_size, s.seed)
        self.queries = subset(test, REAL_QUERIES, s.seed + 1)
        self.shape = tuple(train[0].shape[1:])

    def empty(self) -> tuple[torch.Tensor, torch.Tensor]:
        """No images: ``0 x C x H x W`` and no targets."""
        return torch.zeros(0, *self.shape), torch.zeros(0, dtype=torch.long)

    def training_data(self, data: list[RoundData], num_classes: int, min_fake_share: float
                      ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Real images and every generated training image so far labelled ``K + k``, the generated ones
        repeated (whole copies) to make up at least ``min_fake_share``; also the number of repeats."""
        x_fake = torch.cat([d.x_train for d in data])
        y_fake = torch.cat([d.t_train for d in data]) + num_classes
        n_real, n_fake = len(self.real[0]), len(x_fake)
        repeats = 1 if n_fake == 0 else max(1, math.ceil(min_fake_share * n_real / ((1 - min_fake_share) * n_fake)))
        x = torch.cat([self.real[0], x_fake.repeat(repeats, *([1] * (x_fake.ndim - 1)))])
        y = torch.cat([self.real[1], y_fake.repeat(repeats)])
        return x, y, repeats
