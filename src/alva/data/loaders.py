"""Batches for training (shuffled, seeded per epoch) and fixed subsets for fast evaluation."""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends only on ``(seed, epoch)``, so a resumed run sees the same batches."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def make_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = True,
                seed: int = 0, epoch: int = 0, drop_last: bool = False) -> DataLoader:
    """A loader over in-memory tensors that yields whole batches by one indexing (no per-sample collate).

    With ``shuffle`` the order is a function of ``(seed, epoch)`` only.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = TensorDataset(x, y)
    order = RandomSampler(dataset, generator=epoch_generator(seed, epoch)) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(order, batch_size, drop_last=drop_last), batch_size=None)


def subset_indices(y: torch.Tensor, n: int, *, seed: int = 0, stratified: bool = True) -> torch.Tensor:
    """The sorted indices of the ``n`` samples :func:`fixed_subset` picks from labels ``y`` (int64 ``N``).

    With ``stratified``, as equal per class as ``n`` allows; the choice depends only on ``(y, n, seed)``.
    """
    if not 0 < n <= len(y):
        raise ValueError(f"n must be in [1, {len(y)}], got {n}")
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    if not stratified:
        chosen = perm[:n]
    else:
        classes = torch.unique(y)
        rank = torch.empty_like(perm)
        # Position of each sample among the shuffled samples of its own class: interleave classes by it.
        for c in classes:
            members = perm[y[perm] == c]
            rank[members] = torch.arange(len(members))
        key = rank[perm] * len(classes) + torch.searchsorted(classes, y[perm])
        chosen = perm[torch.argsort(key, stable=True)[:n]]
    return torch.sort(chosen).values


def fixed_subset(x: torch.Tensor, y: torch.Tensor, n: int, *, seed: int = 0, stratified: bool = True
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The same ``n`` samples for the same ``seed``; with ``stratified``, as equal per class as ``n`` allows.

    The result is sorted by original index, so a subset of ``n`` is a prefix-stable choice for
    a given seed: it never depends on anything but ``(len(x), y, n, seed)``.
    """
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    chosen = subset_indices(y, n, seed=seed, stratified=stratified)
    return x[chosen], y[chosen]
