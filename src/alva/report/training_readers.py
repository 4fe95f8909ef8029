"""Readers of what training writes: model and generator cards, training settings, the per-step log
(``metrics.jsonl``, plotted here when it has two points or more) and the per-round rates (``rounds.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alva.report.content import Image, Section, Table, flatten, fmt, is_number, label, subsample
from alva.report.figures import line_panels_png

__all__ = ["card", "rounds", "train_config", "training_log"]

MAX_SERIES = 8  # lines per panel of a training plot, columns of its table
MAX_RATE_COLUMNS = 10
MAX_ROWS = 30
NOT_PLOTTED = {"step", "epoch", "round", "lr", "time_s", "seconds", "eps", "n"}
RATE_WORDS = ("acc", "rate", "agree", "detected", "fooled", "prob", "success", "validity", "valid")
PRIORITY_LEAVES = ("success_rate", "detected", "acc", "clean_test_acc", "robust_acc", "fake_rate")
CARD_KINDS = {"generator": "generator", "perturbation-generator": "perturbation generator"}


def card(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """A model's or generator's card (``model.json``, ``generator.json``): what it is and how it was made."""
    what = CARD_KINDS.get(str(data.get("kind")), "generator" if name == "generator.json" else "model")
    if not section.kind:
        section.kind = f"trained {what}"
    if data.get("command"):
        section.command = str(data["command"])
    figures = flatten({k: v for k, v in data.items() if k not in ("command", "mean", "std", "data_sha256_of")})
    classes = data.get("num_classes")
    if what == "perturbation generator" and classes == 0:  # its num_classes counts target-class input channels
        figures["num_classes"] = "0 (untargeted: no target-class input)"
    built = f"architecture {data['architecture']}" if data.get("architecture") else \
        f"built by {data['factory']}" if data.get("factory") else "architecture ?"
    section.text.append(f"{what.capitalize()} card ({name}): {built}"
                        + (f", {classes} classes" if classes else "")
                        + (f", attacks {data['target_model']}" if data.get("target_model") else "")
                        + (f", {data['epochs']} epochs" if data.get("epochs") else "") + ".")
    section.add_figures(f"{what} card", figures, settings=True)


def train_config(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """The settings a training run was started with (``config.json``)."""
    section.add_figures(f"training settings ({name})", flatten(data), settings=True)


def _is_rate(records: list[dict[str, Any]], key: str) -> bool:
    values = [r[key] for r in records if is_number(r.get(key))]
    return all(0 <= v <= 1 for v in values) and any(w in key.split(".")[-1] for w in RATE_WORDS)


def training_log(section: Section, records: list[dict[str, Any]], *, has_rounds: bool = False) -> None:
    """The figures of ``metrics.jsonl`` per epoch (or step): a table, and a plot of losses and rates when there
    are two points or more. With a ``rounds.json`` beside it (which tells the same per round) only a line."""
    x_key = "epoch" if all("epoch" in r for r in records) else "step"
    flat = [flatten(r) for r in records]
    counts: dict[str, int] = {}
    for r in flat:
        for k, v in r.items():
            if is_number(v):
                counts[k] = counts.get(k, 0) + 1
    keys = [k for k, c in counts.items() if c >= max(1, len(flat) // 2) and k.split(".")[-1] not in NOT_PLOTTED]
    section.kind = section.kind or "training"
    section.text.append(f"Training log (metrics.jsonl): {len(records)} records.")
    if has_rounds or not keys:
        return
    rates = [k for k in keys if _is_rate(flat, k)][:MAX_SERIES]
    others = [k for k in keys if not _is_rate(flat, k)][:MAX_SERIES]
    xs = {r.get(x_key) for r in flat if is_number(r.get(x_key))}
    if len(xs) >= 2:  # one point is no curve: the table says it

        def lines(ks: list[str]) -> dict[str, tuple[list[float], list[float]]]:
            out = {}
            for k in ks:
                pts = [(r[x_key], r[k]) for r in flat if is_number(r.get(k)) and is_number(r.get(x_key))]
                if pts:
                    out[k] = ([p[0] for p in pts], [p[1] for p in pts])
            return out

        panels = [(name, lines(ks)) for name, ks in (("loss and other values", others), ("accuracy and rates", rates))
                  if ks]
        png = line_panels_png(panels, xlabel=x_key, title="training curves",
                              rate_panels=[p[0] == "accuracy and rates" for p in panels])
        section.images.append(Image("training curves from metrics.jsonl: losses (left) and accuracies (right) "
                                    f"against {x_key}", png, "metrics.jsonl"))
    columns = (others + rates)[:MAX_SERIES]
    rows = [[r.get(x_key), *[r.get(c) for c in columns]] for r in subsample(flat, MAX_ROWS)]
    section.tables.append(Table(f"metrics per {x_key}", [x_key, *map(label, columns)], rows))


def _rate_keys(records: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in records:
        for k in r:
            keys.setdefault(k)
    rates = [k for k in keys if k.split(".")[-1] not in ("n", "round") and all(
        is_number(r.get(k)) and 0 <= r[k] <= 1 for r in records if k in r)]

    def priority(k: str) -> int:
        leaf = k.split(".")[-1]
        return PRIORITY_LEAVES.index(leaf) if leaf in PRIORITY_LEAVES else len(PRIORITY_LEAVES)

    return sorted(rates, key=priority)  # stable: keeps the recorded order within a priority


def rounds(section: Section, name: str, data: Any, folder: Path) -> None:
    """``rounds.json`` of convergence training (a list of rounds) or fake-class training (rounds with settings,
    status and final figures): the rates per round as a table, and as a plot when no figure of them exists."""
    records = data.get("rounds") if isinstance(data, Mapping) else data
    if not isinstance(records, list):
        return
    section.kind = "fake-class training" if isinstance(data, Mapping) else "convergence training"
    flat = [{"round": r.get("round", i), **{k: v for k, v in r.items() if is_number(v) and k != "round"},
             **flatten(r.get("metrics") or {})} for i, r in enumerate(records) if isinstance(r, Mapping)]
    rates = _rate_keys(flat)
    shown = rates[:MAX_RATE_COLUMNS]
    extra = [k for k in ("added",) if any(k in r for r in flat)]
    section.text.append(f"{len(flat)} rounds recorded in {name}."
                        + (f" The table shows {len(shown)} of {len(rates)} rates; {name} holds them all."
                           if len(rates) > len(shown) else ""))
    rows = [[r.get("round"), *[r.get(k) for k in extra], *[r.get(k) for k in shown]] for r in flat]
    section.tables.append(Table("rates per round", ["round", *extra, *map(label, shown)], rows))
    if isinstance(data, Mapping):
        for key in ("status", "final", "data"):
            value = data.get(key)
            if isinstance(value, Mapping):
                section.add_figures(key, flatten(value))
            elif value is not None:
                section.text.append(f"{key}: {fmt(value)}")
    plotted = any((folder / n).exists() for n in ("rounds.png", "metrics.png"))
    if shown and len(flat) >= 2 and not plotted:
        lines = {k: ([r["round"] for r in flat if k in r], [r[k] for r in flat if k in r]) for k in shown}
        section.images.append(Image(f"rates against round (from {name})",
                                    line_panels_png([("rate", lines)], xlabel="round", rate_panels=[True]), name))
