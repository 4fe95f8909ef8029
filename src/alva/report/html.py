"""A self-contained HTML report of a run folder (``alva report RUN_DIR``, and ``runs/demo/report.html``).

:func:`build_report` looks at what a folder holds and makes one ``<section>`` per folder: the demo summary
(``summary.json`` with attacks and eps curves), an attack's ``summary.json``, an evaluation's ``result.json``
(strong evaluation, sparse images, demo parts), model and generator cards (``model.json``, ``generator.json``),
``config.json``, training curves (``metrics.jsonl``, plotted here with matplotlib), rounds (``rounds.json``: the
rates per round as a table and a plot), ``profile.json``; every ``*.png`` in the folder is embedded as a base64
``data:`` URI. With ``depth`` > 0 the sub-folders (a folder of runs, or the parts of ``runs/demo``) get sections
too. The page needs no network and no JavaScript: the CSS is inline, every text is escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from alva.tracking.files import atomic_write_bytes  # noqa: E402

__all__ = ["Image", "Section", "Table", "build_report", "folder_section", "render", "write_report"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SKIP_DIRS = {"tb", "data", "weights", "__pycache__", "checkpoints"}
SKIP_JSON = {"state.json"}  # resumable state of a strong evaluation: its result.json says it all
MAX_SEQUENCE = 6  # images shown of a numbered series such as round_NNN.png or samples/epoch_NNN.png
MAX_SERIES = 8  # lines per panel of a training plot, columns of its table
MAX_RATE_COLUMNS = 10
MAX_ROWS = 30
MAX_KV_ROWS = 40
NOT_PLOTTED = {"step", "epoch", "round", "lr", "time_s", "seconds", "eps", "n"}
RATE_WORDS = ("acc", "rate", "agree", "detected", "fooled", "prob", "success", "validity", "valid")
PRIORITY_LEAVES = ("success_rate", "detected", "acc", "clean_test_acc", "robust_acc", "fake_rate")
GRID_CAPTION = ("top row: clean images (true label y, prediction); middle: adversarial images (prediction, "
                "confidence; red = misclassified); bottom: the perturbation")


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[Any]]


@dataclass
class Image:
    caption: str
    png: bytes
    name: str = ""


@dataclass
class Section:
    id: str
    title: str
    path: str
    kind: str = ""
    text: list[str] = field(default_factory=list)
    command: str = ""
    tables: list[Table] = field(default_factory=list)
    images: list[Image] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    modified: float = 0.0

    @property
    def empty(self) -> bool:
        return not (self.tables or self.images)


# ---------------------------------------------------------------------------------------------------- helpers


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _load_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut by a stop: the rest is still useful
        if isinstance(record, dict):
            records.append(record)
    return records


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt(v: Any) -> str:
    """A value as table text: 4 decimals for fractions, 4 significant digits otherwise."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != v:
            return "nan"
        if abs(v) <= 1:
            return f"{v:.4f}"
        return str(int(v)) if v == int(v) and abs(v) < 1e9 else f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt(x) for x in v)
    return str(v)


def flatten(obj: Any, prefix: str = "", *, skip: Iterable[str] = ("per_class",), max_list: int = 10) -> dict[str, Any]:
    """Dotted keys to scalar leaves; short lists of scalars are kept as lists, longer ones and ``skip`` dropped."""
    skip = set(skip)
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in skip:
                continue
            out.update(flatten(v, f"{prefix}{k}.", skip=skip, max_list=max_list))
    elif isinstance(obj, (list, tuple)):
        if len(obj) <= max_list and all(_number(x) or isinstance(x, (str, bool)) or x is None for x in obj):
            out[prefix[:-1]] = list(obj)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        out[prefix[:-1]] = obj
    return out


def _label(key: str) -> str:
    return key.replace("_", " ")


def _kv_table(caption: str, mapping: Mapping[str, Any], limit: int = MAX_KV_ROWS) -> Table | None:
    items = [(k, v) for k, v in mapping.items() if v is not None and v != ""]
    if not items:
        return None
    rows = [[_label(k), v] for k, v in items[:limit]]
    if len(items) > limit:
        rows.append([f"… {len(items) - limit} more", ""])
    return Table(caption, ["figure", "value"], rows)


def _subsample(items: Sequence[Any], n: int) -> list[Any]:
    if len(items) <= n:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in picks]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "section"


def plot_png(panels: Sequence[tuple[str, Mapping[str, tuple[Sequence[float], Sequence[float]]]]], *,
             xlabel: str, title: str = "", rate_panels: Sequence[bool] = ()) -> bytes:
    """PNG bytes of side-by-side line plots: ``panels`` is (y label, {line label: (xs, ys)}) per panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for i, (ylabel, lines) in enumerate(panels):
        ax = axes[0, i]
        for label, (xs, ys) in lines.items():
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if i < len(rate_panels) and rate_panels[i]:
            ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ what a folder holds


def _attack_tables(section: Section, report: Mapping[str, Any], what: str) -> None:
    figures = {k: report.get(k) for k in ("n", "clean_acc", "robust_acc", "adv_error", "success_rate",
                                          "confidence_misclassified", "mean_steps", "mean_queries")}
    figures.update({f"mean {k} norm of the perturbation": v for k, v in (report.get("norms") or {}).items()})
    table = _kv_table(f"{what}: key figures", figures)
    if table:
        section.tables.append(table)
    per_class = report.get("per_class") or {}
    if isinstance(per_class, Mapping) and per_class:
        columns = [c for c in ("n", "clean_acc", "robust_acc", "success_rate")
                   if any(isinstance(v, Mapping) and c in v for v in per_class.values())]
        rows = [[k, *[v.get(c) for c in columns]] for k, v in per_class.items() if isinstance(v, Mapping)]
        section.tables.append(Table(f"{what}: per true class", ["class", *map(_label, columns)], rows))


def _eps_table(section: Section, curves: Mapping[str, Sequence[Mapping[str, Any]]], caption: str) -> None:
    eps = sorted({float(p["eps"]) for c in curves.values() for p in c if "eps" in p})
    if not eps:
        return
    values = {name: {float(p["eps"]): p.get("robust_acc") for p in c if "eps" in p} for name, c in curves.items()}
    rows = [[e, *[values[name].get(e) for name in curves]] for e in eps]
    section.tables.append(Table(caption, ["eps", *[f"{name} robust acc" for name in curves]], rows))


def _settings_text(settings: Mapping[str, Any]) -> str:
    """The recorded arguments of a command, as options (the values it ran with, defaults included)."""
    skip = {"command", "handler", "func", "device", "no_progress", "data_root", "debug"}
    parts = [f"alva {settings['command']}"] if settings.get("command") else []
    for k, v in settings.items():
        if k in skip or v is None or v is False:
            continue
        opt = "--" + k.replace("_", "-")
        if v is True:
            parts.append(opt)
        elif isinstance(v, (list, tuple)):
            parts.append(f"{opt} {','.join(map(str, v))}")
        elif isinstance(v, (str, int, float)):
            parts.append(f"{opt} {v}")
    return " ".join(parts)


def _demo_summary(section: Section, data: Mapping[str, Any]) -> None:
    section.kind = "demo"
    attacks = data.get("attacks") or {}
    n = next((r.get("n") for r in attacks.values() if isinstance(r, Mapping)), None)
    section.text.append(
        f"Trained a small CNN (cnn-small) on MNIST: clean test accuracy {fmt(data.get('clean_test_acc'))}. "
        f"Attacked {fmt(n)} test images with {', '.join(a.upper() for a in attacks)} at L-inf eps 0.3 and swept "
        "eps; the sub-sections below show each part with its image grid.")
    capabilities = [r for r in data.get("capabilities") or [] if isinstance(r, Mapping)]
    if capabilities:  # the demo's row per part (capability), each part with its own section below
        if data.get("quick"):
            section.text.append("Run with --quick: tiny budgets, a smoke test; the figures are not results.")
        columns = ("part", "capability", "model", "result")
        section.tables.append(Table("every capability in one run (a section per part below)", list(columns),
                                    [[r.get(c) for c in columns] for r in capabilities]))
    columns = ("clean_acc", "robust_acc", "success_rate", "confidence_misclassified")
    rows = [[name.upper(), r.get("n"), *[r.get(c) for c in columns]] for name, r in attacks.items()
            if isinstance(r, Mapping)]
    section.tables.append(Table("attacks at eps 0.3 (L-inf)", ["attack", "n", *map(_label, columns)], rows))
    curves = {k.upper(): v for k, v in (data.get("eps_curves") or {}).items()}
    _eps_table(section, curves, "robust accuracy against eps")
    s = data.get("softmax_fgsm_eps_0.25")
    if isinstance(s, Mapping):
        section.text.append("The FGSM paper's linear result: FGSM at eps 0.25 on the shipped softmax regression "
                            "(mnist/softmax), the whole test set; the paper reports an error of 0.999 and a mean "
                            "confidence of 0.793 on the misclassified images.")
        section.tables.append(Table("FGSM eps 0.25 on mnist/softmax", ["figure", "value", "paper"], [
            ["n", s.get("n"), "10000"], ["adversarial error", s.get("adv_error"), "0.999"],
            ["confidence (misclassified)", s.get("confidence_misclassified"), "0.793"]]))
    if data.get("torch"):
        section.text.append(f"torch {data['torch']}.")


def _attack_summary(section: Section, data: Mapping[str, Any]) -> None:
    report = data["report"]
    settings = data.get("settings") if isinstance(data.get("settings"), Mapping) else {}
    section.kind = section.kind or "attack"
    name = str(report.get("attack", "attack")).upper()
    where = f" on {data['model']}" if data.get("model") else ""
    norm = settings.get("norm", "")
    eps = settings.get("eps")
    budget = f" ({norm} eps {fmt(eps)})" if eps is not None else ""
    section.text.append(f"{name} attack{where}{budget} on {fmt(report.get('n'))} test images.")
    if settings and not section.command:
        section.command = _settings_text(settings)
    _attack_tables(section, report, name)
    if data.get("eps_curve"):
        _eps_table(section, {name: data["eps_curve"]}, "robust accuracy against eps")
    if data.get("budget") is not None:
        section.tables.append(Table("budget", ["figure", "value"], [["queries per image", data["budget"]]]))


def _strong_eval(section: Section, data: Mapping[str, Any]) -> None:
    section.kind = "strong evaluation"
    settings = data.get("settings") or {}
    section.text.append(
        f"Strong evaluation of {data.get('model', 'the model')}: {', '.join(settings.get('attacks', []))} in turn "
        f"({settings.get('norm', '')} eps {fmt(settings.get('eps'))}, version {settings.get('version', '')}) on "
        f"{fmt(data.get('n'))} test images; robust accuracy {fmt(data.get('robust_acc'))} "
        f"(clean {fmt(data.get('clean_acc'))}).")
    if isinstance(data.get("arguments"), Mapping) and not section.command:
        section.command = _settings_text(data["arguments"])
    rows = data.get("table") or []
    columns = ["attack", "robust_acc", "attacked", "broken", "seconds"]
    section.tables.append(Table("robust accuracy after each attack", list(map(_label, columns)),
                                [[r.get(c) for c in columns] for r in rows if isinstance(r, Mapping)]))
    for warning in data.get("warnings") or []:
        section.text.append(f"Warning: {warning}")
    if isinstance(data.get("report"), Mapping):
        _attack_tables(section, data["report"], "strong evaluation")


def _sparse(section: Section, data: Mapping[str, Any]) -> None:
    section.kind = "sparse images"
    settings = data.get("settings") or {}
    summary = data["summary"]
    overall = summary.get("overall") or {}
    section.text.append(
        f"Sparse images that {data.get('model', 'the model')} assigns to chosen classes (method "
        f"{settings.get('method', '?')}, confidence >= {fmt(settings.get('confidence'))}, at most "
        f"{fmt(settings.get('max_pixels'))} non-zero pixels): success rate {fmt(overall.get('success_rate'))}.")
    if settings and not section.command:
        section.command = _settings_text(settings)
    table = _kv_table("overall", overall)
    if table:
        section.tables.append(table)
    per_class = summary.get("per_class") or {}
    columns = ["n", "success_rate", "target_prob", "l0", "l1"]
    section.tables.append(Table("per target class", ["class", *map(_label, columns)],
                                [[k, *[v.get(c) for c in columns]] for k, v in per_class.items()]))


def _generic_json(section: Section, name: str, data: Any) -> None:
    """Any other JSON: the settings, the tables (lists of records) and the scalar figures it holds."""
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        data = {"records": data}
    if not isinstance(data, Mapping):
        return
    for key in ("settings", "arguments", "config"):
        if isinstance(data.get(key), Mapping):
            if data[key].get("command") and not section.command:
                section.command = _settings_text(data[key])
            table = _kv_table(f"{name}: {key}", flatten(data[key]))
            if table:
                section.tables.append(table)
    rest = {k: v for k, v in data.items() if k not in ("settings", "arguments", "config")}
    for key, value in rest.items():
        if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            records = [flatten(r) for r in value]
            columns = list(dict.fromkeys(k for r in records for k in r))[:MAX_RATE_COLUMNS]
            rows = [[r.get(c) for c in columns] for r in _subsample(records, MAX_ROWS)]
            section.tables.append(Table(f"{name}: {_label(key)}", list(map(_label, columns)), rows))
    table = _kv_table(f"{name}: figures", flatten(rest))
    if table:
        section.tables.append(table)


def _card(section: Section, name: str, data: Mapping[str, Any]) -> None:
    kind = "generator" if data.get("kind") == "generator" or name == "generator.json" else "model"
    if not section.kind:
        section.kind = "trained generator" if kind == "generator" else "trained model"
    if data.get("command"):
        section.command = str(data["command"])
    card = flatten({k: v for k, v in data.items() if k not in ("command", "mean", "std", "data_sha256_of")})
    section.text.append(f"{kind.capitalize()} card ({name}): architecture {data.get('architecture', '?')}"
                        + (f", {data['epochs']} epochs" if data.get("epochs") else "") + ".")
    table = _kv_table(f"{kind} card", card)
    if table:
        section.tables.append(table)


def _training_curves(section: Section, records: list[dict[str, Any]], has_rounds: bool) -> None:
    x_key = "epoch" if all("epoch" in r for r in records) else "step"
    flat = [flatten(r) for r in records]
    counts: dict[str, int] = {}
    for r in flat:
        for k, v in r.items():
            if _number(v):
                counts[k] = counts.get(k, 0) + 1
    keys = [k for k, c in counts.items() if c >= max(1, len(flat) // 2) and k.split(".")[-1] not in NOT_PLOTTED]
    if not section.kind:
        section.kind = "training"
    section.text.append(f"Training log (metrics.jsonl): {len(records)} records.")
    if has_rounds or not keys:
        return  # a rounds.json (fake-class training) tells the same per round, with its own plots

    def is_rate(k: str) -> bool:
        vals = [r[k] for r in flat if _number(r.get(k))]
        return all(0 <= v <= 1 for v in vals) and any(w in k.split(".")[-1] for w in RATE_WORDS)

    rates = [k for k in keys if is_rate(k)][:MAX_SERIES]
    others = [k for k in keys if not is_rate(k)][:MAX_SERIES]

    def lines(ks: list[str]) -> dict[str, tuple[list[float], list[float]]]:
        out = {}
        for k in ks:
            pts = [(r[x_key], r[k]) for r in flat if _number(r.get(k)) and _number(r.get(x_key))]
            if pts:
                out[k] = ([p[0] for p in pts], [p[1] for p in pts])
        return out

    panels = [(label, lines(ks)) for label, ks in (("loss and other values", others), ("accuracy and rates", rates))
              if ks]
    if panels:
        png = plot_png(panels, xlabel=x_key, title="training curves",
                       rate_panels=[p[0] == "accuracy and rates" for p in panels])
        section.images.append(Image("training curves from metrics.jsonl: losses (left) and accuracies (right) "
                                    f"against {x_key}", png, "metrics.jsonl"))
    columns = (others + rates)[:MAX_SERIES]
    rows = [[r.get(x_key), *[r.get(c) for c in columns]] for r in _subsample(flat, MAX_ROWS)]
    section.tables.append(Table(f"metrics per {x_key}", [x_key, *map(_label, columns)], rows))


def _rate_keys(rounds: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for r in rounds:
        for k in r:
            keys.setdefault(k)
    rates = [k for k in keys if k.split(".")[-1] != "n" and all(
        _number(r.get(k)) and 0 <= r[k] <= 1 for r in rounds if k in r)]

    def priority(k: str) -> int:
        leaf = k.split(".")[-1]
        return PRIORITY_LEAVES.index(leaf) if leaf in PRIORITY_LEAVES else len(PRIORITY_LEAVES)

    return sorted(rates, key=priority)  # stable: keeps the recorded order within a priority


def _rounds(section: Section, data: Any, folder: Path) -> None:
    rounds = data.get("rounds") if isinstance(data, Mapping) else data
    if not isinstance(rounds, list):
        return
    section.kind = "fake-class training" if isinstance(data, Mapping) else "convergence training"
    flat = [{"round": r.get("round", i), **{k: v for k, v in r.items() if _number(v) and k not in ("round",)},
             **flatten(r.get("metrics") or {})} for i, r in enumerate(rounds) if isinstance(r, Mapping)]
    rates = _rate_keys(flat)
    shown = rates[:MAX_RATE_COLUMNS]
    extra = [k for k in ("added",) if any(k in r for r in flat)]
    section.text.append(f"{len(flat)} rounds recorded in rounds.json."
                        + (f" The table shows {len(shown)} of {len(rates)} rates; rounds.json holds them all."
                           if len(rates) > len(shown) else ""))
    rows = [[r.get("round"), *[r.get(k) for k in extra], *[r.get(k) for k in shown]] for r in flat]
    section.tables.append(Table("rates per round", ["round", *extra, *map(_label, shown)], rows))
    if isinstance(data, Mapping):
        for key in ("status", "final", "data"):
            value = data.get(key)
            if isinstance(value, Mapping):
                table = _kv_table(key, flatten(value))
                if table:
                    section.tables.append(table)
            elif value is not None:
                section.text.append(f"{key}: {fmt(value)}")
    if shown and not any((folder / n).exists() for n in ("rounds.png", "metrics.png")):
        lines = {k: ([r["round"] for r in flat if k in r], [r[k] for r in flat if k in r]) for k in shown}
        section.images.append(Image("rates against round (from rounds.json)",
                                    plot_png([("rate", lines)], xlabel="round", rate_panels=[True]), "rounds.json"))


def _profile(section: Section, data: Mapping[str, Any]) -> None:
    section.kind = "robustness profile"
    models = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    section.text.append(f"Robustness profile of {len(models)} model(s): accuracy under FGSM, PGD and the strong "
                        "evaluation, accuracy against eps, rubbish-image rate.")
    flat = {m: flatten(p, skip=("per_class", "strong_table", "accuracy_vs_eps")) for m, p in models.items()}
    columns = list(dict.fromkeys(k for f in flat.values() for k, v in f.items() if _number(v)))
    section.tables.append(Table("key figures per model", ["model", *map(_label, columns)],
                                [[m, *[f.get(c) for c in columns]] for m, f in flat.items()]))
    curves = {m: p["accuracy_vs_eps"] for m, p in models.items() if isinstance(p.get("accuracy_vs_eps"), list)}
    if curves:
        eps = sorted({float(q["eps"]) for c in curves.values() for q in c})
        values = {m: {float(q["eps"]): q.get("robust_acc") for q in c} for m, c in curves.items()}
        section.tables.append(Table("accuracy against eps", ["eps", *curves],
                                    [[e, *[values[m].get(e) for m in curves]] for e in eps]))


def _image_captions(section: Section, name: str) -> str:
    stem = name[:-4]
    if stem == "grid" and section.kind in ("attack", "demo part", "adversarial dataset"):
        return f"{name}: {GRID_CAPTION}"
    if stem == "grid" and section.kind == "sparse images":
        return f"{name}: generated images per target class (target probability, L0; red = not a success)"
    if stem in ("eps_curve", "accuracy_vs_eps"):
        return f"{name}: accuracy against eps (L-inf)"
    if stem == "rounds":
        return f"{name}: rates against round"
    if stem == "metrics" and section.kind == "fake-class training":
        return f"{name}: the metrics against round"
    return name


def _images(section: Section, folder: Path) -> None:
    pngs = sorted(p for p in folder.glob("*.png") if p.is_file() and not p.name.startswith("."))
    series: dict[str, list[Path]] = {}
    singles = []
    for p in pngs:
        m = re.fullmatch(r"(.*?)[_-]?(\d+)\.png", p.name)
        (series.setdefault(m.group(1), []) if m else singles).append(p)
    for prefix, members in list(series.items()):
        if len(members) < 3:
            singles.extend(members)
            del series[prefix]
    for p in sorted(singles):
        _add_png(section, p, _image_captions(section, p.name))
    for prefix, members in series.items():
        shown = _subsample(members, MAX_SEQUENCE)
        for p in shown:
            _add_png(section, p, f"{p.name} ({len(shown)} of the {len(members)} {prefix} images shown)"
                     if len(shown) < len(members) else p.name)


def _add_png(section: Section, path: Path, caption: str) -> None:
    try:
        data = path.read_bytes()
    except OSError:
        return
    if data.startswith(PNG_SIGNATURE):
        section.images.append(Image(caption, data, path.name))


def folder_section(folder: str | os.PathLike, rel: str = ".") -> Section:
    """The section of one folder (not its sub-folders); ``empty`` when nothing in it was recognised."""
    folder = Path(folder)
    section = Section(id="", title=folder.name if rel == "." else rel, path=rel)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    section.files = [p.name + ("/" if p.is_dir() else "") for p in files if p.name != "report.html"]
    section.modified = max((p.stat().st_mtime for p in files if p.is_file()), default=0.0)
    seen: set[str] = set()

    def load(name: str) -> Any:
        seen.add(name)
        return _load_json(folder / name) if (folder / name).is_file() else None

    for name in ("model.json", "generator.json"):
        card = load(name)
        if isinstance(card, Mapping):
            _card(section, name, card)
    summary = load("summary.json")
    if isinstance(summary, Mapping) and "attacks" in summary and "eps_curves" in summary:
        _demo_summary(section, summary)
        seen.add("summary.md")
    elif isinstance(summary, Mapping) and isinstance(summary.get("report"), Mapping):
        _attack_summary(section, summary)
    elif summary is not None:
        section.kind = section.kind or "results"
        _generic_json(section, "summary.json", summary)
    result = load("result.json")
    if isinstance(result, Mapping):
        if isinstance(result.get("table"), list) and "robust_acc" in result:
            _strong_eval(section, result)
        elif isinstance(result.get("summary"), Mapping) and "overall" in result["summary"]:
            _sparse(section, result)
        elif isinstance(result.get("report"), Mapping):
            section.kind = "demo part" if "eps_curve" in result or "seconds" in result else "attack"
            _attack_summary(section, result)
        else:
            section.kind = section.kind or "results"
            _generic_json(section, "result.json", result)
    profile = load("profile.json")
    if isinstance(profile, Mapping):
        _profile(section, profile)
    rounds = load("rounds.json")
    if rounds is not None:
        _rounds(section, rounds, folder)
    config = load("config.json")
    if isinstance(config, Mapping):
        table = _kv_table("training settings (config.json)", flatten(config))
        if table:
            section.tables.append(table)
    if (folder / "metrics.jsonl").is_file():
        records = _load_jsonl(folder / "metrics.jsonl")
        if records:
            _training_curves(section, records, has_rounds=rounds is not None)
    for path in files:  # any other JSON file a command wrote
        if path.suffix == ".json" and path.is_file() and path.name not in seen and path.name not in SKIP_JSON:
            data = _load_json(path)
            if data is not None:
                section.kind = section.kind or "results"
                _generic_json(section, path.name, data)
    _images(section, folder)
    if not section.kind and section.images:
        section.kind = "images"
    return section


def _folders(root: Path, depth: int) -> list[tuple[Path, str]]:
    out = [(root, ".")]
    if depth <= 0:
        return out
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if child.name.startswith(".") or child.name in SKIP_DIRS:
            continue
        out += [(f, child.name if r == "." else f"{child.name}/{r}") for f, r in _folders(child, depth - 1)]
    return out


def build_report(run_dir: str | os.PathLike, *, depth: int = 2, title: str | None = None) -> tuple[str, list[Section]]:
    """The HTML page of ``run_dir`` (and its sub-folders down to ``depth``), and its sections."""
    root = Path(run_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"no run folder {root}")
    sections = []
    ids: set[str] = set()
    for folder, rel in _folders(root, depth):
        section = folder_section(folder, rel)
        if section.empty:
            continue
        base = "summary" if rel == "." else _slug(rel)
        section.id, i = base, 2
        while section.id in ids:
            section.id, i = f"{base}-{i}", i + 1
        ids.add(section.id)
        sections.append(section)
    if not sections:
        raise ValueError(f"{root} holds no run files alva recognises (summary.json, result.json, model.json, "
                         "metrics.jsonl, rounds.json, profile.json, *.png)")
    return render(sections, title=title or root.resolve().name, root=root), sections


def _header_command(sections: list[Section]) -> str:
    if sections[0].path == "." and sections[0].command:
        return sections[0].command
    if sections[0].kind == "demo":  # the demo's command is on the card of the model it trained
        return next((s.command for s in sections if s.command.startswith("alva demo")), "alva demo")
    return ""


def render(sections: list[Section], *, title: str, root: Path | None = None) -> str:
    """The page: a header (run name, dates, command), a table of contents, one ``<section>`` per entry."""
    e = html.escape
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    finished = max(s.modified for s in sections)
    ran = _dt.datetime.fromtimestamp(finished, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if finished else "?"
    command = _header_command(sections)
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>alva report: {e(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           "<header>", f"<h1>alva report: {e(title)}</h1>", '<dl class="meta">']
    if root is not None:
        out.append(f"<dt>folder</dt><dd><code>{e(str(root))}</code></dd>")
    out.append(f"<dt>last written</dt><dd>{e(ran)}</dd><dt>report made</dt><dd>{e(now)}</dd>")
    if command:
        out.append(f"<dt>command</dt><dd><code>{e(command)}</code></dd>")
    out += ["</dl>", '<nav><h2>Contents</h2><ol>']
    out += [f'<li><a href="#{e(s.id)}">{e(s.title)}</a> <span class="kind">{e(s.kind)}</span></li>' for s in sections]
    out += ["</ol></nav>", "</header>", "<main>"]
    for s in sections:
        out += [f'<section id="{e(s.id)}">', f"<h2>{e(s.title)} <span class=\"kind\">{e(s.kind)}</span></h2>"]
        out += [f"<p>{e(t)}</p>" for t in s.text]
        if s.command and s.command != command:
            out.append(f'<p class="command">command: <code>{e(s.command)}</code></p>')
        for t in s.tables:
            out.append(_table_html(t))
        if s.images:
            out.append('<div class="figures">')
            for img in s.images:
                uri = "data:image/png;base64," + base64.b64encode(img.png).decode("ascii")
                out.append(f'<figure><img src="{uri}" alt="{e(img.name or img.caption)}">'
                           f"<figcaption>{e(img.caption)}</figcaption></figure>")
            out.append("</div>")
        if s.files:
            out.append(f'<p class="files">files: {e(", ".join(s.files))}</p>')
        out.append("</section>")
    out += ["</main>", f"<footer>written by alva {e(_version())}; self-contained: images are embedded, "
            "nothing is fetched.</footer>", "</body>", "</html>", ""]
    return "\n".join(out)


def _table_html(table: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(str(h))}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f'<td class="{"num" if _number(c) else "txt"}">{e(fmt(c))}</td>' for c in row)
                   + "</tr>" for row in table.rows)
    return (f'<div class="tw"><table><caption>{e(table.caption)}</caption><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _version() -> str:
    try:
        from alva import __version__
    except ImportError:  # pragma: no cover
        return "?"
    return str(__version__)


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *, depth: int = 2,
                 title: str | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``), atomically; return its path."""
    page, _ = build_report(run_dir, depth=depth, title=title)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    atomic_write_bytes(path, page.encode("utf-8"))
    return path


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 1.5rem 3rem;color:#1d232a;background:#fff;line-height:1.45}
header{border-bottom:2px solid #d8dee4;margin-bottom:1rem}
h1{font-size:1.7rem;margin:1.2rem 0 .5rem}
h2{font-size:1.3rem;margin:.2rem 0 .6rem}
.kind{font-size:.75rem;font-weight:normal;color:#fff;background:#57606a;border-radius:.6rem;padding:.1rem .5rem;
vertical-align:middle}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:.5rem 0}
dl.meta dt{font-weight:600;color:#57606a}
dl.meta dd{margin:0}
nav ol{columns:2;margin:.3rem 0 1rem}
nav h2{font-size:1rem}
section{border:1px solid #d8dee4;border-radius:.5rem;padding:1rem 1.2rem;margin:1.2rem 0;background:#fafbfc}
.tw{display:inline-block;vertical-align:top;max-width:100%;overflow-x:auto;margin:.6rem 1.5rem .9rem 0}
table{border-collapse:collapse;font-size:.85rem;background:#fff}
caption{text-align:left;font-weight:600;padding:.2rem 0;color:#24292f}
th,td{border:1px solid #d0d7de;padding:.2rem .55rem}
th{background:#eef1f4;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font-size:.82rem;background:#eef1f4;padding:.05rem .3rem;border-radius:.25rem;word-break:break-all}
.figures{display:flex;flex-wrap:wrap;gap:1rem;margin-top:.6rem}
figure{margin:0;background:#fff;border:1px solid #d8dee4;border-radius:.4rem;padding:.5rem;max-width:100%}
figure img{max-width:100%;height:auto;display:block}
figcaption{font-size:.8rem;color:#57606a;max-width:60ch;margin-top:.3rem}
p.files{font-size:.75rem;color:#6e7781}
footer{font-size:.75rem;color:#6e7781;margin-top:2rem}
"""
