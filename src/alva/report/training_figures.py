"""Figures of generator training: grids of images (a generator's samples, an AdvGAN's adversarial images) as PNG,
and the success/validity bars of generator attacks."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from alva.tracking.files import atomic_write_bytes


def tile(images: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """``rows * cols`` images ``N x C x H x W`` as one ``C x (rows H) x (cols W)`` grid, row by row."""
    _, c, h, w = images.shape
    return images.reshape(rows, cols, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h, cols * w)


def grid_png(grid: torch.Tensor, title: str = "") -> bytes:
    """A grey-scale PNG of ``grid`` (``C x H x W`` in [0, 1]) drawn with matplotlib's Agg backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 6.3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 0.95))
    ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def save_figure(fig, path: str | os.PathLike, **kwargs) -> Path:
    """Write a matplotlib figure as PNG to ``path``, atomically."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    plt.close(fig)  # a figure made by pyplot stays open until closed; any other is left as it is
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def success_validity_bars(rows: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Bars of ``success``, ``validity`` and ``valid_adversarial`` per labelled summary of a generator attack
    (``alva advgan train|attack``, ``alva atgan ...``): one group of three bars per label."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = ["success", "validity", "valid_adversarial"]
    fig = Figure(figsize=(1.6 + 1.3 * len(rows), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        values = [row.get(key, float("nan")) for row in rows.values()]
        bars = ax.bar(xs, values, width, label=key.replace("_", " "))
        ax.bar_label(bars, [f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks(range(len(rows)), list(rows), fontsize=8)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("rate")
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path, dpi=110, bbox_inches="tight")
