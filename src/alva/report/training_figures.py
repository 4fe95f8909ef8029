"""Figures of generator training: grids of images (a generator's samples, an AdvGAN's adversarial images) as PNG."""

from __future__ import annotations

import io

import torch


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

