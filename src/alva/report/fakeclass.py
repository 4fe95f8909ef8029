"""Figures of fake-class training (:mod:`alva.training.fakeclass`): its eleven metrics against rounds, and one grid
of generated images per round for inspection (metric 1 has no agreed number)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.ticker import MaxNLocator

from alva.report.figures import plt, save_figure

# (label, metric key, figure inside it) of the detection panel: held-out and trained-on generated images
DETECTION = (
    ("(2) current batch", "m02_current_batch", "detected"),
    ("(3) past train images", "m03_past_train", "detected"),
    ("(4) test, current net", "m04_test_current", "detected"),
    ("(5) test, past nets", "m05_test_past", "detected"),
    ("(6) other network", "m06_other_network", "detected"),
    ("(7) DE, current nets", "m07_other_process.current_net", "detected"),
    ("(7) DE, other network", "m07_other_process.reference_net", "detected"),
)


def metric_value(record: Mapping[str, Any], path: str) -> float | None:
    """The number at the dotted ``path`` of a round's metrics (``"m00_generation.l0"``), or None."""
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def _line(ax, rounds: Sequence[Mapping[str, Any]], path: str, label: str, **kwargs) -> None:
    points = [(r["round"], v) for r in rounds if (v := metric_value(r["metrics"], path)) is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, **kwargs)


def fakeclass_metrics_plot(path: str | os.PathLike, rounds: Sequence[Mapping[str, Any]], *, max_pixels: int,
                           title: str = "fake-class training") -> Path:
    """Four panels against the round: (0) generation and (8); (2)-(7) detection of generated images as
    their fake class after the round's training; (9), (10) accuracy on real data; (1) the OOD proxy.

    ``rounds`` are the records of ``rounds.json`` (``{"round": r, "metrics": {...}}``); the last one, with
    ``"final": True``, holds no training, so the detection and accuracy panels show the trained rounds.
    """
    trained = [r for r in rounds if not r.get("final")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    ax = axes[0, 0]
    _line(ax, rounds, "m00_generation.success_rate", "(0) success rate")
    _line(ax, rounds, "m00_generation.target_prob", "(0) target prob")
    points = [(r["round"], v / max_pixels) for r in rounds
              if (v := metric_value(r["metrics"], "m00_generation.l0")) is not None]
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"(0) L0 / {max_pixels}")
    _line(ax, rounds, "m07_other_process.generation.success_rate", "(7) DE success rate", linestyle="--")
    final = [r for r in rounds if r.get("final")]
    if final and (v := metric_value(final[-1]["metrics"], "m08_final_sparse.success_rate")) is not None:
        ax.plot([final[-1]["round"]], [v], marker="*", markersize=14, linestyle="", color="black",
                label="(8) final network")
    ax.set_title("generation against the network of the round", fontsize=9)
    ax = axes[0, 1]
    for label, key, figure in DETECTION:
        _line(ax, trained, f"{key}.{figure}", label)
    ax.set_title("detected as their fake class, after the round's training", fontsize=9)
    ax = axes[1, 0]
    _line(ax, rounds, "m09_real_train.acc", "(9) real train acc")
    _line(ax, rounds, "m10_real_test.acc", "(10) real test acc")
    _line(ax, rounds, "m10_real_test.fake_rate", "(10) real test called fake", linestyle="--")
    ax.set_title("real data (generation rounds: before training; others after)", fontsize=9)
    for a in (axes[0, 0], axes[0, 1], axes[1, 0]):
        a.set_ylim(-0.02, 1.02)
    ax = axes[1, 1]
    _line(ax, rounds, "m01_ood.nn_dist", "(1) generated: L2 to nearest train image")
    _line(ax, rounds, "m01_ood.nn_dist_real_test", "(1) real test: L2 to nearest train image")
    twin = ax.twinx()
    _line(twin, rounds, "m01_ood.reference_agree", "(1) other network agrees (right)", color="gray",
          linestyle=":")
    _line(twin, rounds, "m01_ood.nn_agree", "(1) most similar train image agrees (right)", color="tab:green",
          linestyle=":")
    _line(twin, rounds, "m01_ood.nn_agree_real_test", "(1) same, real test images (right)", color="tab:olive",
          linestyle=":")
    twin.set_ylabel("share agreeing with the target class", fontsize=8)
    twin.set_ylim(-0.02, 1.02)
    ax.set_title("OOD proxy (no agreed metric: see the image grids)", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles + more[0], labels + more[1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),
              ncol=2)
    for a in axes.flat:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.set_xlabel("round")
        a.grid(alpha=0.3)
        if a is not ax:
            a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def image_rows_grid(path: str | os.PathLike, rows: Sequence[tuple[str, Sequence[torch.Tensor | None] | None,
                                                                  Sequence[str]]], *,
                    columns: int, title: str = "") -> Path:
    """A grid of ``len(rows)`` rows and ``columns`` columns; each row is ``(label, images or None, titles)``
    and a missing image (a row shorter than ``columns``, or ``None``) leaves its cell blank.

    Drawn as one mosaic on one axes (a figure of many small axes takes seconds to save)."""
    shapes = [img.shape for _, images, _ in rows for img in (images or []) if img is not None]
    channels, height, width = shapes[0] if shapes else (1, 28, 28)
    pad, gap = 3, height // 2  # between columns; above each row, for the titles
    step_y = height + gap
    mosaic = torch.ones(3, len(rows) * step_y, columns * (width + pad))
    for i, (_, images, _) in enumerate(rows):
        for j, img in enumerate((images or [])[:columns]):
            if img is not None:
                img = img.detach().cpu().float().clamp(0, 1)
                top, left = i * step_y + gap, j * (width + pad)
                mosaic[:, top:top + height, left:left + width] = img.expand(3, -1, -1) if channels == 1 else img
    fig, ax = plt.subplots(figsize=(1.15 * columns, 1.15 * len(rows) * step_y / height))
    ax.imshow(mosaic.permute(1, 2, 0).numpy(), interpolation="nearest")
    for i, (label, _, titles) in enumerate(rows):
        for j, text in enumerate(list(titles)[:columns]):
            if text:
                ax.text(j * (width + pad) + width / 2, i * step_y + gap - 0.5, text, fontsize=5.5, ha="center",
                        va="bottom")
        ax.text(-pad, i * step_y + gap + height / 2, label, fontsize=7, ha="right", va="center", rotation=90)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def round_grid(path: str | os.PathLike, r: int, result, de, reference_pred: torch.Tensor, *, num_classes: int,
               n_train: int, held_out: bool,
               most_similar: Callable[[torch.Tensor], tuple[list[torch.Tensor], list[str]]]) -> Path:
    """round_NNN.png: per class, a generated training image, its most similar real training image, a held-out
    image, and a DE image; titles give the target probability, L0 and the reference network's call.

    ``result`` is the round's :class:`~alva.attacks.sparse.SparseConfident` generation (its first ``n_train``
    images are to train on, the rest held out), ``de`` the differential-evolution one (or None),
    ``reference_pred`` the reference network's predictions of ``result``'s images, and ``most_similar(images)``
    the most similar real image and its title for each image.
    """
    k = num_classes
    x, t, ok = result.x_adv.cpu(), result.target.cpu(), result.success.cpu()
    prob = result.extras["target_prob"].cpu()
    l0 = result.extras["l0"].cpu()

    def pick(rows: range) -> list[int | None]:
        chosen: list[int | None] = []
        for c in range(k):
            cands = [i for i in rows if t[i] == c]
            good = [i for i in cands if ok[i]]
            chosen.append(next(iter(good or cands), None))
        return chosen

    def row(label: str, idx: list[int | None]) -> tuple[str, list, list[str]]:
        return (label, [None if i is None else x[i] for i in idx],
                ["" if i is None else f"{int(t[i])} p={prob[i]:.2f} L0={int(l0[i])}\nref:{int(reference_pred[i])}"
                 + ("" if ok[i] else " FAIL") for i in idx])

    train_idx = pick(range(n_train))
    present = [i for i in train_idx if i is not None]
    similar, similar_titles = most_similar(x[present]) if present else ([], [])
    near_images: list[torch.Tensor | None] = []
    near_titles: list[str] = []
    found = iter(zip(similar, similar_titles, strict=True))
    for i in train_idx:
        image, text = next(found) if i is not None else (None, "")
        near_images.append(image)
        near_titles.append(text)
    rows = [row("generated (train)", train_idx), ("most similar real", near_images, near_titles)]
    if held_out:
        rows.append(row("held-out", pick(range(n_train, len(x)))))
    if de is not None:
        de_x, de_t = de.x_adv.cpu(), de.target.cpu()
        de_p = de.adv_logits.cpu().softmax(dim=1).gather(1, de_t[:, None]).squeeze(1)
        idx = [next((i for i in range(len(de_t)) if de_t[i] == c and de.success[i]),
                    next((i for i in range(len(de_t)) if de_t[i] == c), None)) for c in range(k)]
        rows.append(("DE (metric 7)", [None if i is None else de_x[i] for i in idx],
                     ["" if i is None else f"{c} p={de_p[i]:.2f}" for c, i in enumerate(idx)]))
    return image_rows_grid(path, rows, columns=k,
                           title=f"round {r}: sparse images generated against the network of the round "
                                 f"(success {result.success.float().mean():.0%})")
