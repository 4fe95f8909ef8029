"""What the evaluations take: images and labels in memory, an :class:`~alva.data.ImageData`, or any iterable of
``(images, labels)`` batches (a :class:`torch.utils.data.DataLoader`); and, under ``torchrun``, this process's
share of them (:func:`alva.distributed.shard_indices`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from alva import distributed
from alva.data import ImageData

Samples = torch.Tensor | ImageData | Iterable[tuple[torch.Tensor, torch.Tensor]]
"""Images to evaluate: a tensor (with the labels given apart), an ``ImageData`` or an iterable of batches."""

__all__ = ["Samples", "held_in_memory", "local_batches", "sharded"]


def held_in_memory(x: Samples, y: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The images and labels when the input is held in memory (tensors or an in-memory ``ImageData``), else
    ``None`` (the input is to be streamed)."""
    if isinstance(x, torch.Tensor):
        if y is None:
            raise ValueError("labels y are needed with an image tensor x")
        return x, y
    if y is not None:
        raise ValueError("give y only with an image tensor x: an ImageData or a loader carries its own labels")
    if isinstance(x, ImageData):
        return (x.x, x.labels) if x.x is not None else None
    given: object = x
    if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
        raise TypeError(f"expected an image tensor, an ImageData or an iterable of (images, labels) batches, got "
                        f"{type(given).__name__}")
    return None


def sharded() -> bool:
    """Whether the images are split over several processes (``torchrun`` with more than one)."""
    return distributed.world_size() > 1


def local_batches(x: Samples, y: torch.Tensor | None, batch_size: int, *, num_workers: int = 0
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """This process's batches ``(images, labels, global indices)`` of at most ``batch_size`` samples.

    Tensors and an ``ImageData`` are split by :func:`~alva.distributed.shard_indices` (each process reads only
    its own images); any other iterable is dealt out batch by batch (batch ``b`` to rank ``b % world``), so
    each process iterates over every batch of it but keeps only its own. One process gets every batch.

    Args:
        x: The images (with ``y``) or a source of batches.
        y: The labels of an image tensor ``x``, else ``None``.
        batch_size: Samples per batch for tensors and ``ImageData`` (an iterable keeps its own batches).
        num_workers: Worker processes reading a streamed ``ImageData``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    memory = held_in_memory(x, y)
    if memory is not None:
        images, labels = memory
        index = torch.tensor(distributed.shard_indices(len(images)), dtype=torch.long)
        for i in range(0, len(index), batch_size):
            part = index[i:i + batch_size]
            yield images[part], labels[part], part
        return
    if isinstance(x, ImageData):
        index = torch.tensor(distributed.shard_indices(len(x)), dtype=torch.long)
        data = x.subset(index) if sharded() else x
        start = 0
        for images, labels in data.loader(batch_size, num_workers=num_workers):
            yield images, labels, index[start:start + len(images)]
            start += len(images)
        return
    rank, world, start = distributed.rank(), distributed.world_size(), 0
    for b, (images, labels) in enumerate(x):
        if b % world == rank:
            yield images, labels, torch.arange(start, start + len(images))
        start += len(images)
