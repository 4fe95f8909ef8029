"""Figures: image grids of clean, adversarial and perturbation; accuracy against eps; sparse images per class;
grouped bar charts. Every figure alva writes is drawn here (matplotlib's Agg backend, PNG files)."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from alva.attacks.base import AttackResult  # noqa: E402
from alva.attacks.sparse import pixel_l0  # noqa: E402
from alva.results import Batch  # noqa: E402
from alva.tracking.files import atomic_write_bytes  # noqa: E402

__all__ = ["WRONG_BEFORE_COLOR", "adversarial_grid", "distance_curve_plot", "eps_curve_plot", "figure_png",
           "grouped_bars", "line_panels_png", "pick_examples", "plt", "robust_accuracy_steps", "save_figure",
           "show_image", "sparse_grid"]

SUCCESS_COLOR = "red"  # the attack changed a correct prediction
WRONG_BEFORE_COLOR = "darkorange"  # misclassified before any attack: not the attack's doing


def figure_png(fig, dpi: int = 110) -> bytes:
    """The PNG bytes of ``fig`` (cropped to its content); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def save_figure(fig, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path`` as a PNG, atomically, close it and return the path."""
    atomic_write_bytes(path, figure_png(fig))
    return Path(path)


def show_image(ax, image: torch.Tensor, **kwargs) -> None:
    """Draw one ``C x H x W`` image in [0, 1] on ``ax`` without ticks (grey for one channel)."""
    image = image.detach().cpu()
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), **{"cmap": "gray", "vmin": 0, "vmax": 1, **kwargs})
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def pick_examples(batch: Batch, n: int) -> torch.Tensor:
    """Indices of up to ``n`` samples to show: successes of distinct classes (those on correctly classified
    images first), then other successes, then the rest."""
    rank = torch.where(batch.success, batch.wrong_before.int(), 2)
    order = torch.argsort(rank, stable=True).tolist()
    chosen: list[int] = []
    classes: set[int] = set()
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

    Red marks an adversarial prediction that is wrong on an image the model classified correctly; orange marks
    images the model misclassified before any attack. ``notes`` (one short string per sample of ``batch``) is
    printed under each adversarial image's title.
    """
    idx = pick_examples(batch, n)
    fig, axes = plt.subplots(3, len(idx), figsize=(1.25 * len(idx), 4.3), squeeze=False)
    for col, i in enumerate(idx.tolist()):
        delta = (batch.x_adv[i] - batch.x[i])
        scale = max(delta.abs().max().item(), 1e-8)
        wrong_before = bool(batch.wrong_before[i])
        show_image(axes[0, col], batch.x[i])
        axes[0, col].set_title(f"y={int(batch.y[i])} pred={int(batch.clean_pred[i])}"
                               + ("\nwrong before" if wrong_before else ""), fontsize=7,
                               color=WRONG_BEFORE_COLOR if wrong_before else "black")
        show_image(axes[1, col], batch.x_adv[i])
        fooled = bool(batch.adv_pred[i] != batch.y[i])
        color = WRONG_BEFORE_COLOR if wrong_before else SUCCESS_COLOR if fooled else "black"
        note = f"\n{notes[i]}" if notes is not None else ""
        axes[1, col].set_title(f"pred={int(batch.adv_pred[i])} ({batch.adv_confidence[i]:.0%}){note}", fontsize=7,
                               color=color)
        show_image(axes[2, col], delta.mean(0, keepdim=True), cmap="seismic", vmin=-scale, vmax=scale)
        axes[2, col].set_title(f"|d|inf={delta.abs().max():.2f}", fontsize=7)
    for row, label in enumerate(("clean", "adversarial", "perturbation")):
        axes[row, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def eps_curve_plot(path: str | os.PathLike, curves: Mapping[str, Sequence[Mapping[str, float]]], *,
                   metric: str = "robust_acc", title: str = "", x: str = "eps") -> Path:
    """One line per attack: ``metric`` (default robust accuracy) against ``x`` (default eps). The y axis spans
    [0, 1] when every value is a fraction, else it starts at 0 and fits the values (e.g. counts)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    values = [p[metric] for points in curves.values() for p in points]
    for label, points in curves.items():
        ax.plot([p[x] for p in points], [p[metric] for p in points], marker="o", label=label)
    ax.set_xlabel(x)
    ax.set_ylabel(metric.replace("_", " "))
    if all(0 <= v <= 1 for v in values):
        ax.set_ylim(-0.02, 1.02)
    else:
        ax.set_ylim(bottom=min(0.0, *values) - 0.02)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def robust_accuracy_steps(distances: Sequence[float]) -> tuple[list[float], list[float]]:
    """The exact curve of robust accuracy against eps given each sample's minimum-norm distance (0: wrong before
    the attack, inf: not broken): eps values where it steps, and the robust accuracy from each of them on."""
    d = torch.as_tensor(list(distances), dtype=torch.float64).sort().values
    if len(d) == 0:
        return [0.0], [0.0]
    steps = torch.unique(torch.cat([torch.zeros(1, dtype=d.dtype), d[torch.isfinite(d)]]))
    broken = torch.searchsorted(d, steps, right=True)
    return steps.tolist(), (1 - broken.double() / len(d)).tolist()


def distance_curve_plot(path: str | os.PathLike, distances: Mapping[str, Sequence[float]], *, norm: str,
                        marks: Sequence[float] = (), title: str = "") -> Path:
    """Robust accuracy against eps from minimum-norm attacks (one line per attack): the share of samples whose
    smallest adversarial perturbation found is larger than eps, drawn exactly (a step at each distance), with
    dots at the eps values of ``marks``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    right = max([*marks, 0.0])
    for label, values in distances.items():
        xs, ys = robust_accuracy_steps(values)
        right = max(right, xs[-1] * 1.05)
        line = ax.step([*xs, right], [*ys, ys[-1]], where="post", label=label)[0]
        if marks:
            at = torch.searchsorted(torch.tensor(xs, dtype=torch.float64),
                                    torch.tensor(list(marks), dtype=torch.float64), right=True) - 1
            ax.plot(list(marks), [ys[max(int(i), 0)] for i in at], "o", color=line.get_color(), markersize=4)
    ax.set_xlim(0, right or 1.0)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel("robust accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=10)
    return save_figure(fig, path)


def line_panels_png(panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]], *,
                    xlabel: str, title: str = "", rate_panels: Sequence[bool] = ()) -> bytes:
    """PNG bytes of side-by-side line plots: ``panels`` is (y label, {line label: (xs, ys)}) per panel; a panel
    marked in ``rate_panels`` has the y range [0, 1]."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for i, (ylabel, lines) in enumerate(panels):
        ax = axes[0, i]
        for name, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=name)
        if all(float(x).is_integer() for xs, _ in lines.values() for x in xs):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, steps, rounds: no 1.5
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if i < len(rate_panels) and rate_panels[i]:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return figure_png(fig, dpi=100)


def _distinct(images: torch.Tensor, rows: list[int]) -> list[tuple[int, int]]:
    """(first row, count) of each distinct image among ``rows``, in order: identical results are shown once."""
    groups: list[list[int]] = []
    for i in rows:
        for group in groups:
            if torch.equal(images[group[0]], images[i]):
                group.append(i)
                break
        else:
            groups.append([i])
    return [(group[0], len(group)) for group in groups]


def sparse_grid(path: str | os.PathLike, result: AttackResult, *, per_class: int = 8, title: str = "") -> Path:
    """One column per target class of a sparse-image result (:class:`~alva.attacks.SparseConfident` or
    differential evolution on a blank image) with its distinct images, up to ``per_class``, each titled with its
    target probability and L0 (red: not a success); an image generated ``k > 1`` times identically says ``xk``."""
    if result.target is None:
        raise ValueError("sparse_grid needs a targeted result (one column per target class)")
    x, target, success = result.x_adv.detach().cpu(), result.target.cpu(), result.success.cpu()
    target_prob = result.adv_logits.detach().cpu().softmax(1).gather(1, target[:, None]).squeeze(1)
    l0 = pixel_l0(x, result.extras.get("low", 0.0), result.extras.get("zero_tol", 1e-3))
    classes = torch.unique(target).tolist()
    shown = {c: _distinct(x, (target == c).nonzero().squeeze(1).tolist())[:per_class] for c in classes}
    rows = max(1, max(len(v) for v in shown.values()))
    fig, axes = plt.subplots(rows, len(classes), figsize=(1.25 * len(classes) + 0.3, 1.35 * rows + 0.4),
                             squeeze=False, layout="constrained")
    for col, c in enumerate(classes):
        for row in range(rows):
            ax = axes[row, col]
            if row >= len(shown[c]):
                ax.axis("off")
                continue
            i, count = shown[c][row]
            show_image(ax, x[i])
            times = f" x{count}" if count > 1 else ""
            ax.set_title(f"{c}: p={target_prob[i]:.2f} L0={int(l0[i])}{times}", fontsize=6,
                         color="black" if bool(success[i]) else SUCCESS_COLOR)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def grouped_bars(path: str | os.PathLike, groups: Sequence[str], series: Mapping[str, Sequence[float]], *,
                 ylabel: str = "rate", title: str = "", value_format: str = "{:.2f}", ylim: float = 1.35) -> Path:
    """Bars of each series side by side for every group (e.g. attack success per target model), each bar
    labelled with its value; the legend sits above the bars."""
    fig, ax = plt.subplots(figsize=(1.7 + (0.8 + 0.4 * len(series)) * len(groups), 3.3))
    width = 0.8 / max(len(series), 1)
    for k, (label, values) in enumerate(series.items()):
        xs = [g + (k - (len(series) - 1) / 2) * width for g in range(len(groups))]
        bars = ax.bar(xs, list(values), width, label=label)
        ax.bar_label(bars, [value_format.format(v) for v in values], fontsize=7)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylim(0, ylim)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper center", ncol=len(series))
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)
