"""What a run folder holds, as one :class:`~alva.report.content.Section`: every JSON file through the reader of
its kind, the training log, and every PNG (a numbered series such as ``round_NNN.png`` thinned out); and the
folders of a run in the order the run made them."""

from __future__ import annotations

import os
import re
from pathlib import Path

from alva.report.content import PNG_SIGNATURE, Image, Section, load_json, load_jsonl, subsample
from alva.report.kinds import read_json
from alva.report.training_readers import training_log

__all__ = ["folder_section", "run_folders"]

SKIP_DIRS = {"tb", "data", "weights", "__pycache__", "checkpoints"}
SKIP_JSON = {"state.json"}  # resumable state of a strong evaluation: its result.json says it all
FIRST_JSON = ("model.json", "generator.json", "summary.json", "result.json", "profile.json", "rounds.json",
              "config.json")  # read in this order, then the others by name
MAX_SEQUENCE = 6  # images shown of a numbered series such as round_NNN.png or samples/epoch_NNN.png
GRID_CAPTION = ("top row: clean images (true label y, prediction; orange = misclassified before any attack); "
                "middle: adversarial images (prediction, confidence; red = the attack made a correct prediction "
                "wrong); bottom: the perturbation")
SPARSE_CAPTION = ("generated images per target class (target probability, L0; red = not a success; xk = the same "
                  "image generated k times)")


def _caption(section: Section, name: str) -> str:
    stem = name[:-4]
    if stem == "grid":
        return f"{name}: {SPARSE_CAPTION if section.kind == 'sparse images' else GRID_CAPTION}"
    if stem == "distance_curve":
        return (f"{name}: robust accuracy against eps from one run of a minimum-norm attack (the share of images "
                "whose smallest adversarial perturbation found is larger than eps; dots: the eps values of the table)")
    if stem in ("eps_curve", "accuracy_vs_eps"):
        return f"{name}: accuracy against eps (L-inf)"
    if stem == "rounds":
        return f"{name}: rates against round"
    if stem == "metrics" and section.kind == "fake-class training":
        return f"{name}: the metrics against round"
    return name


def _add_png(section: Section, path: Path, caption: str) -> None:
    try:
        data = path.read_bytes()
    except OSError:
        return
    if data.startswith(PNG_SIGNATURE):
        section.images.append(Image(caption, data, path.name))


def _images(section: Section, folder: Path) -> None:
    pngs = sorted(p for p in folder.glob("*.png") if p.is_file() and not p.name.startswith("."))
    series: dict[str, list[Path]] = {}
    singles: list[Path] = []
    for p in pngs:
        m = re.fullmatch(r"(.*?)[_-]?(\d+)\.png", p.name)
        (series.setdefault(m.group(1), []) if m else singles).append(p)
    for prefix, members in list(series.items()):
        if len(members) < 3:
            singles.extend(members)
            del series[prefix]
    for p in sorted(singles):
        _add_png(section, p, _caption(section, p.name))
    for prefix, members in series.items():
        shown = subsample(members, MAX_SEQUENCE)
        for p in shown:
            _add_png(section, p, f"{p.name} ({len(shown)} of the {len(members)} {prefix} images shown)"
                     if len(shown) < len(members) else p.name)


def _json_order(path: Path) -> tuple[int, str]:
    return (FIRST_JSON.index(path.name) if path.name in FIRST_JSON else len(FIRST_JSON), path.name)


def folder_section(folder: str | os.PathLike, rel: str = ".") -> Section:
    """The section of one folder (not its sub-folders); ``empty`` when nothing in it was recognised."""
    folder = Path(folder)
    section = Section(id="", title=folder.name if rel == "." else rel, path=rel)
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    section.files = [p.name + ("/" if p.is_dir() else "") for p in files if p.name != "report.html"]
    section.modified = max((p.stat().st_mtime for p in files if p.is_file() and p.name != "report.html"),
                           default=0.0)
    kinds = []
    for path in sorted((p for p in files if p.suffix == ".json" and p.is_file() and p.name not in SKIP_JSON),
                       key=_json_order):
        data = load_json(path)
        if data is not None:
            kinds.append(read_json(section, path.name, data, folder))
    if (folder / "metrics.jsonl").is_file():
        records = load_jsonl(folder / "metrics.jsonl")
        if records:
            training_log(section, records, has_rounds=any(k.endswith("-rounds") for k in kinds))
    _images(section, folder)
    if not section.kind and section.images:
        section.kind = "images"
    return section


def _first_written(folder: Path) -> float:
    """When the run began writing ``folder``: the oldest modification time of the files in it (or below it)."""
    times = [p.stat().st_mtime for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    if not times:
        times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()]
    return min(times, default=float("inf"))


def run_folders(root: Path, depth: int) -> list[tuple[Path, str]]:
    """``root`` and its sub-folders down to ``depth`` levels as (folder, path relative to root), each level in
    the order the run made them (the oldest file first; the name breaks ties)."""
    out = [(root, ".")]
    if depth <= 0:
        return out
    children = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in SKIP_DIRS]
    for child in sorted(children, key=lambda p: (_first_written(p), p.name)):
        out += [(f, child.name if r == "." else f"{child.name}/{r}") for f, r in run_folders(child, depth - 1)]
    return out
