"""Figures: image grids of clean, adversarial and perturbation; accuracy against eps."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from alva.evaluation.robustness import Batch  # noqa: E402
from alva.tracking.files import atomic_write_bytes  # noqa: E402


def _save(fig, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _show(ax, image: torch.Tensor, **kwargs) -> None:
    image = image.detach().cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), **{"cmap": "gray", "vmin": 0, "vmax": 1, **kwargs})
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def pick_examples(batch: Batch, n: int) -> torch.Tensor:
    """Indices of up to ``n`` samples to show: successes of distinct classes, then other successes, then the rest."""
    order = torch.argsort((~batch.success).int(), stable=True).tolist()
    chosen, classes = [], set()
    for i in order:
        if batch.success[i] and int(batch.y[i]) not in classes and len(chosen) < n:
            chosen.append(i)
            classes.add(int(batch.y[i]))
    taken = set(chosen)
    chosen += [i for i in order if i not in taken][: n - len(chosen)]
    return torch.tensor(chosen, dtype=torch.long)


def adversarial_grid(path: str | os.PathLike, batch: Batch, *, n: int = 10, title: str = "",
                     notes: Sequence[str] | None = None) -> Path:
    """Three rows: clean (true label, prediction), adversarial (prediction, confidence) and the perturbation.

    ``notes`` (one short string per sample of ``batch``) is printed under each adversarial image's title.
    """
    idx = pick_examples(batch, n)
    fig, axes = plt.subplots(3, len(idx), figsize=(1.25 * len(idx), 4.3), squeeze=False)
    for col, i in enumerate(idx.tolist()):
        delta = (batch.x_adv[i] - batch.x[i])
        scale = max(delta.abs().max().item(), 1e-8)
        _show(axes[0, col], batch.x[i])
        axes[0, col].set_title(f"y={int(batch.y[i])} pred={int(batch.clean_pred[i])}", fontsize=7)
        _show(axes[1, col], batch.x_adv[i])
        color = "red" if bool(batch.adv_pred[i] != batch.y[i]) else "black"
        note = f"\n{notes[i]}" if notes is not None else ""
        axes[1, col].set_title(f"pred={int(batch.adv_pred[i])} ({batch.adv_confidence[i]:.0%}){note}", fontsize=7,
                               color=color)
        _show(axes[2, col], delta.mean(0, keepdim=True), cmap="seismic", vmin=-scale, vmax=scale)
        axes[2, col].set_title(f"|d|inf={delta.abs().max():.2f}", fontsize=7)
    for row, label in enumerate(("clean", "adversarial", "perturbation")):
        axes[row, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def eps_curve_plot(path: str | os.PathLike, curves: Mapping[str, Sequence[Mapping[str, float]]], *,
                   metric: str = "robust_acc", title: str = "", x: str = "eps") -> Path:
    """One line per attack: ``metric`` (default robust accuracy) against ``x`` (default eps)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, points in curves.items():
        ax.plot([p[x] for p in points], [p[metric] for p in points], marker="o", label=label)
    ax.set_xlabel(x)
    ax.set_ylabel(metric.replace("_", " "))
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return _save(fig, path)
