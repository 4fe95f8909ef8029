"""What a report page is made of (sections of tables, images and text) and how values become table text.

The readers of :mod:`alva.report.readers` and :mod:`alva.report.training_readers` fill :class:`Section` objects;
:mod:`alva.report.html` renders them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alva.tracking.logger import read_metrics

__all__ = ["PNG_SIGNATURE", "Image", "Section", "Table", "flatten", "fmt", "is_number", "kv_table", "label",
           "load_json", "load_jsonl", "settings_text", "slug", "subsample"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_KV_ROWS = 40
FOLD_SETTINGS_ROWS = 6  # a settings table longer than this is folded (``<details>``)
FOLD_ROWS = 20  # any table longer than this is folded


@dataclass
class Table:
    """A captioned table; ``folded`` tables are rendered closed, to be opened by the reader."""

    caption: str
    header: list[str]
    rows: list[list[Any]]
    folded: bool = False

    def __post_init__(self) -> None:
        self.folded = self.folded or len(self.rows) > FOLD_ROWS


@dataclass
class Image:
    caption: str
    png: bytes
    name: str = ""


@dataclass
class Section:
    """The part of the page about one folder: its kind (shown as a badge), text, command, tables and images."""

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

    def add_figures(self, caption: str, mapping: Mapping[str, Any], *, settings: bool = False,
                    folded: bool = False) -> None:
        """Append the :func:`kv_table` of ``mapping`` (closed when ``folded``), unless nothing is left of it."""
        table = kv_table(caption, mapping, settings=settings)
        if table:
            table.folded = table.folded or folded
            self.tables.append(table)


def load_json(path: Path) -> Any:
    """The JSON value of ``path``, or None when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file; a line cut by a stop is skipped (the rest is still useful)."""
    try:
        return [r for r in read_metrics(path) if isinstance(r, dict)]
    except OSError:
        return []


def is_number(v: Any) -> bool:
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
        return str(int(v)) if abs(v) < 1e9 and v == int(v) else f"{v:.4g}"  # infinity stays "inf"
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
        if len(obj) <= max_list and all(is_number(x) or isinstance(x, (str, bool)) or x is None for x in obj):
            out[prefix[:-1]] = list(obj)
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        out[prefix[:-1]] = obj
    return out


def label(key: str) -> str:
    return key.replace("_", " ")


def kv_table(caption: str, mapping: Mapping[str, Any], limit: int = MAX_KV_ROWS, *, settings: bool = False
             ) -> Table | None:
    """A two-column table (figure, value) of the non-empty entries; ``settings`` tables of more than a few rows
    are folded. None when nothing is left."""
    items = [(k, v) for k, v in mapping.items() if v is not None and v != "" and k != "kind"]
    if not items:
        return None
    rows = [[label(k), v] for k, v in items[:limit]]
    if len(items) > limit:
        rows.append([f"… {len(items) - limit} more", ""])
    return Table(caption, ["figure", "value"], rows, folded=settings and len(rows) > FOLD_SETTINGS_ROWS)


def subsample(items: Sequence[Any], n: int) -> list[Any]:
    """At most ``n`` items spread evenly over ``items``, the first and last included."""
    if len(items) <= n:
        return list(items)
    picks = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in picks]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "section"


def settings_text(settings: Mapping[str, Any]) -> str:
    """The recorded arguments of a command, as options (the values it ran with, defaults included)."""
    skip = {"command", "handler", "func", "device", "no_progress", "data_root", "debug", "kind"}
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
