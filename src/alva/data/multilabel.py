"""Multi-label MNIST: 56 x 56 images holding 1 to 4 digits of distinct classes on a 2 x 2 grid.

Each image is a 2 x 2 grid of 28 x 28 cells. A count ``k`` is drawn uniformly from ``1..max_digits``,
then ``k`` distinct classes, ``k`` distinct cells, and for each class one MNIST image of that class from
the chosen split; the other cells stay blank (0). The label is the multi-hot vector of the classes shown.

Everything is drawn from a ``torch.Generator`` seeded with ``seed`` (the global RNG is left alone), and
only from the one MNIST split asked for, so a generated test set never holds a training digit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from alva.data.mnist import load_mnist

CELL = 28
GRID = 2
CELLS = GRID * GRID
NUM_CLASSES = 10
EMPTY = -1


@dataclass(frozen=True)
class MultiLabelLayout:
    """What each generated image is made of.

    ``sources[i, c]`` is the index into the MNIST split of the digit in cell ``c`` of image ``i``, or
    ``EMPTY`` (-1) for a blank cell. Cells are numbered row by row: 0 top left, 1 top right, 2 bottom
    left, 3 bottom right.
    """

    split: str
    seed: int
    max_digits: int
    sources: torch.Tensor  # int64 N x 4


def cell_slices(cell: int) -> tuple[slice, slice]:
    """Rows and columns of ``cell`` (0..3, row by row) in a 56 x 56 image."""
    row, col = divmod(cell, GRID)
    return slice(row * CELL, (row + 1) * CELL), slice(col * CELL, (col + 1) * CELL)


def sample_layout(source_labels: torch.Tensor, n: int, *, seed: int = 0, max_digits: int = 4,
                  split: str = "?") -> MultiLabelLayout:
    """Draw which source digit goes into which cell for ``n`` images, from labels ``source_labels`` (int64)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 1 <= max_digits <= CELLS:
        raise ValueError(f"max_digits must be in 1..{CELLS}, got {max_digits}")
    counts = torch.bincount(source_labels, minlength=NUM_CLASSES)
    if len(counts) != NUM_CLASSES or (counts == 0).any():
        raise ValueError(f"the source labels must cover the classes 0..{NUM_CLASSES - 1}, got counts {counts.tolist()}")
    g = torch.Generator().manual_seed(int(seed))
    k = torch.randint(1, max_digits + 1, (n,), generator=g)
    classes = torch.rand(n, NUM_CLASSES, generator=g).argsort(dim=1)[:, :CELLS]  # distinct classes per image
    cells = torch.rand(n, CELLS, generator=g).argsort(dim=1)  # distinct cells per image
    # One source image per (image, slot), uniform among the split's images of the slot's class.
    by_class = torch.argsort(source_labels, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    u = torch.rand(n, CELLS, generator=g, dtype=torch.float64)
    within = (u * counts[classes].double()).long().clamp_max(counts[classes] - 1)
    picked = by_class[starts[classes] + within]

    used = torch.arange(CELLS).expand(n, CELLS) < k[:, None]  # slot s is filled when s < k
    sources = torch.full((n, CELLS), EMPTY, dtype=torch.int64)
    sources.scatter_(1, cells, torch.where(used, picked, torch.full_like(picked, EMPTY)))
    return MultiLabelLayout(split=split, seed=int(seed), max_digits=max_digits, sources=sources)


def compose(images: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Build the grid images and multi-hot labels of ``sources`` (N x 4, from :func:`sample_layout`)."""
    n = len(sources)
    out = torch.zeros(n, images.shape[1], GRID * CELL, GRID * CELL, dtype=torch.float32)
    multi_hot = torch.zeros(n, NUM_CLASSES, dtype=torch.float32)
    for cell in range(CELLS):
        filled = sources[:, cell] != EMPTY
        rows, cols = cell_slices(cell)
        chosen = sources[filled, cell]
        out[filled, :, rows, cols] = images[chosen]
        multi_hot[filled.nonzero().squeeze(1), labels[chosen]] = 1.0
    return out, multi_hot


def make_multilabel_mnist_with_layout(split: str, n: int, seed: int = 0, root: str | os.PathLike | None = None,
                                      max_digits: int = 4) -> tuple[torch.Tensor, torch.Tensor, MultiLabelLayout]:
    """:func:`make_multilabel_mnist` and the layout it was built from (source indices per cell)."""
    images, labels = load_mnist(split, root)
    layout = sample_layout(labels, n, seed=seed, max_digits=max_digits, split=split)
    x, y = compose(images, labels, layout.sources)
    return x, y, layout


def make_multilabel_mnist(split: str, n: int, seed: int = 0, root: str | os.PathLike | None = None,
                          max_digits: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` multi-label MNIST images from the MNIST ``split`` ("train" or "test"), the same for the same seed.

    images: float32 ``N x 1 x 56 x 56`` in [0, 1], a 2 x 2 grid of 28 x 28 cells holding 1 to ``max_digits``
    digits of distinct classes (empty cells are 0); labels: float32 ``N x 10`` multi-hot.
    """
    x, y, _ = make_multilabel_mnist_with_layout(split, n, seed, root, max_digits)
    return x, y


__all__ = ["CELL", "EMPTY", "MultiLabelLayout", "cell_slices", "compose", "make_multilabel_mnist",
           "make_multilabel_mnist_with_layout", "sample_layout"]
