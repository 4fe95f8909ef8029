"""One data set type for every source: its shape, classes and task, and its images in memory or streamed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler, Subset

from alva.data.loaders import epoch_generator, make_loader, subset_indices
from alva.data.mnist import DataError

TASKS = ("multiclass", "multilabel")


class ModelDataMismatch(ValueError):
    """A model's input shape or number of outputs does not fit a data set."""


@dataclass(frozen=True, eq=False, repr=False)
class ImageData:
    """A split of an image data set, as :func:`alva.data.load` returns it.

    Images are float32 in [0, 1], ``C x H x W``; labels are int64 class indices (``task="multiclass"``) or
    float32 multi-hot rows of ``num_classes`` (``task="multilabel"``). The images are either held in memory
    (``x`` and ``y``: the fast path for small sets) or read on demand from ``samples``, a map-style
    :class:`torch.utils.data.Dataset` of ``(image, label)`` pairs, so that a large set is only ever held a
    few batches at a time. ``labels`` always holds every label, so subsets are chosen without reading images.

    Attributes:
        source: The spec it was loaded from (e.g. ``"mnist"``, ``"cifar10:/data/cifar"``).
        split: The split asked for (``"train"`` or ``"test"``; what it means for each source is in :func:`load`).
        shape: ``(C, H, W)`` of every image.
        class_names: One name per class, in class-index order.
        task: ``"multiclass"`` or ``"multilabel"``.
        labels: Every label (int64 ``N`` or float32 ``N x K``).
        x: The images when held in memory, else ``None``.
        samples: The streaming data set when not held in memory, else ``None``.
        origin: What each sample is read from (a file per image, or the one file of an array source).
    """

    source: str
    split: str
    shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    task: str
    labels: torch.Tensor
    x: torch.Tensor | None = None
    samples: Dataset | None = None
    origin: str = ""
    _digest: list[str] = field(default_factory=list)  # the fingerprint, once computed

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if (self.x is None) == (self.samples is None):
            raise ValueError("give exactly one of x (in memory) and samples (streaming)")
        if self.x is not None and len(self.x) != len(self.labels):
            raise ValueError(f"x has {len(self.x)} images but there are {len(self.labels)} labels")

    @property
    def num_classes(self) -> int:
        """The number of classes (the length of a multi-hot label for multi-label data)."""
        return len(self.class_names)

    @property
    def in_memory(self) -> bool:
        """Whether the images are held as one tensor (else they are read on demand)."""
        return self.x is not None

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        c, h, w = self.shape
        where = "in memory" if self.in_memory else "streamed"
        return (f"ImageData({self.source!r}, split={self.split!r}, {len(self)} images of {c} x {h} x {w}, "
                f"{self.num_classes} classes, {self.task}, {where})")

    @property
    def y(self) -> torch.Tensor:
        """Every label (the same as ``labels``)."""
        return self.labels

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the float32 images (``N x C x H x W``, C order) then the labels' raw bytes.

        It depends only on the tensors, not on where they came from: a set exported and loaded back has the
        same fingerprint. A streamed set is decoded batch by batch to compute it (once; the result is kept).
        """
        if not self._digest:
            digest = hashlib.sha256()
            for xb, _ in self.loader(256):
                digest.update(xb.contiguous().numpy().tobytes())
            digest.update(self.labels.contiguous().numpy().tobytes())
            self._digest.append(digest.hexdigest())
        return self._digest[0]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageData:
        """The samples at ``indices`` (in that order), on the same path (in memory or streamed)."""
        index = torch.as_tensor(indices, dtype=torch.int64)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(self)):
            raise IndexError(f"indices must be in [0, {len(self)}), got {int(index.min())}..{int(index.max())}")
        if self.x is not None:
            return replace(self, x=self.x[index], labels=self.labels[index], _digest=[])
        assert self.samples is not None
        return replace(self, samples=Subset(self.samples, index.tolist()), labels=self.labels[index], _digest=[])

    def subset_indices(self, n: int, *, seed: int = 0) -> torch.Tensor:
        """The sorted indices of the fixed subset of ``n`` samples for ``seed`` (stratified by class when
        multi-class, as :func:`alva.data.fixed_subset`)."""
        return subset_indices(self.labels, n, seed=seed, stratified=self.task == "multiclass")

    def tensors(self, n: int | None = None, *, seed: int = 0, num_workers: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels in memory: all of them, or the fixed subset of ``n`` for ``seed``.

        For multi-class data the subset is exactly :func:`alva.data.fixed_subset` ``(x, y, n, seed=seed)``.
        A streamed set reads only the chosen images (``num_workers`` worker processes).

        Args:
            n: How many samples; ``None`` for all.
            seed: Which fixed subset.
            num_workers: Worker processes that read a streamed set.
        """
        data = self if n is None or n == len(self) else self.subset(self.subset_indices(n, seed=seed))
        if data.x is not None:
            return data.x, data.labels
        images = torch.empty(len(data), *self.shape)  # filled batch by batch: no second copy at the end
        start = 0
        for xb, _ in data.loader(256, num_workers=num_workers):
            images[start:start + len(xb)] = xb
            start += len(xb)
        return images, data.labels

    def loader(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, epoch: int = 0,
               drop_last: bool = False, num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
        """Batches ``(images, labels)`` of ``batch_size``, from memory or read by ``num_workers`` processes.

        With ``shuffle`` the order depends only on ``(seed, epoch)`` (on both paths, the same order).

        Args:
            batch_size: Samples per batch (the last one may be smaller unless ``drop_last``).
            shuffle: Visit the samples in a seeded random order instead of in order.
            seed: Seed of the shuffled order.
            epoch: Epoch of the shuffled order (each epoch a different order).
            drop_last: Drop a last batch smaller than ``batch_size``.
            num_workers: Worker processes reading a streamed set (ignored in memory).
            pin_memory: Pin the batches of a streamed set (for copies to a GPU).
        """
        if self.x is not None:
            return make_loader(self.x, self.labels, batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                               drop_last=drop_last)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        assert self.samples is not None
        order = (RandomSampler(range(len(self)), generator=epoch_generator(seed, epoch)) if shuffle
                 else SequentialSampler(range(len(self))))
        return DataLoader(self.samples, batch_size=batch_size, sampler=order, drop_last=drop_last,
                          num_workers=num_workers, pin_memory=pin_memory,
                          persistent_workers=False, prefetch_factor=2 if num_workers else None)

    def check_model_fit(self, in_shape: Sequence[int] | None, num_outputs: int | None) -> None:
        """Raise :class:`ModelDataMismatch` unless a model of input ``in_shape`` (C, H, W) with
        ``num_outputs`` logits fits this data (``None`` skips that check)."""
        check_model_fit(self, in_shape, num_outputs)

    def describe(self) -> dict:
        """What a card or result file records about the data (no tensors)."""
        return {"source": self.source, "split": self.split, "shape": list(self.shape), "task": self.task,
                "num_classes": self.num_classes, "class_names": list(self.class_names), "size": len(self)}


def check_model_fit(data: ImageData, in_shape: Sequence[int] | None, num_outputs: int | None) -> None:
    """Raise :class:`ModelDataMismatch` naming both sides when a model does not fit ``data``.

    Args:
        data: The data set the model is to be run on.
        in_shape: The model's input ``(C, H, W)``, or ``None`` when the model takes any size.
        num_outputs: The model's number of logits, or ``None`` when unknown.
    """
    problems = []
    if in_shape is not None:
        expected = tuple(int(v) for v in in_shape)
        if expected[0] != data.shape[0]:
            problems.append(f"the model takes {expected[0]} channel(s) but the images have {data.shape[0]}")
        if expected[1:] != data.shape[1:]:
            problems.append(f"the model takes {expected[1]} x {expected[2]} images but the images are "
                            f"{data.shape[1]} x {data.shape[2]} (resize the data, or build the model for that size)")
    if num_outputs is not None and int(num_outputs) != data.num_classes:
        problems.append(f"the model has {num_outputs} outputs but the data has {data.num_classes} classes")
    if problems:
        raise ModelDataMismatch(f"model does not fit the data {data.source!r} ({data.split}, "
                                f"{data.shape[0]} x {data.shape[1]} x {data.shape[2]}, {data.num_classes} classes): "
                                + "; ".join(problems))


def checked_labels(labels: torch.Tensor, num_classes: int | None, origin: str) -> tuple[torch.Tensor, str, int]:
    """Labels as int64 ``N`` (multi-class) or float32 ``N x K`` of 0/1 (multi-label), checked.

    Returns the labels, the task and the number of classes (``max + 1`` for class indices unless given).
    Raises :class:`DataError` naming ``origin`` for negative, out-of-range, non-integer or non-0/1 labels.
    """
    if labels.ndim == 1:
        if labels.is_floating_point():
            if not torch.isfinite(labels).all() or not torch.equal(labels, labels.round()):
                raise DataError(f"{origin}: class labels must be whole numbers")
        if len(labels) and int(labels.min()) < 0:
            raise DataError(f"{origin}: labels must not be negative, found {int(labels.min())}")
        found = int(labels.max()) + 1 if len(labels) else 0
        k = found if num_classes is None else num_classes
        if found > k:
            raise DataError(f"{origin}: label {found - 1} is out of range for {k} classes")
        return labels.to(torch.int64), "multiclass", k
    if labels.ndim == 2:
        y = labels.to(torch.float32)
        if not ((y == 0) | (y == 1)).all():
            raise DataError(f"{origin}: multi-hot labels (N x K) must be 0 or 1")
        if num_classes is not None and y.shape[1] != num_classes:
            raise DataError(f"{origin}: multi-hot labels have {y.shape[1]} columns, expected {num_classes}")
        return y, "multilabel", y.shape[1]
    raise DataError(f"{origin}: labels must be N (class indices) or N x K (multi-hot), got shape {tuple(labels.shape)}")


def numbered_names(k: int) -> tuple[str, ...]:
    """Class names ``"0"`` .. ``"k-1"`` for sources that carry none."""
    return tuple(str(i) for i in range(k))


__all__ = ["ImageData", "ModelDataMismatch", "TASKS", "check_model_fit", "checked_labels", "numbered_names"]
