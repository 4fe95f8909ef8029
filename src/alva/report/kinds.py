"""Which reader shows a JSON file: the file's ``"kind"`` (written by
:func:`alva.tracking.atomic_write_json`) names it; files written without one (older run folders) get a kind
guessed from their name and keys by :func:`guess_kind`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from alva.report import readers, training_readers
from alva.report.content import Section
from alva.tracking import json_kind

__all__ = ["READERS", "guess_kind", "kind_of", "read_json"]

Reader = Callable[[Section, str, Any, Path], None]

# kind -> reader; a kind not listed here is shown by readers.generic (settings, tables of records, figures)
READERS: dict[str, Reader] = {
    "demo-summary": readers.demo_summary,
    "attack-summary": readers.attack_summary,
    "strong-eval": readers.strong_eval,
    "sparse-result": readers.sparse_result,
    "robustness-profile": readers.profile,
    "zoo-card": training_readers.card,
    "generator": training_readers.card,  # the card of a generator (its "kind" says what it is)
    "perturbation-generator": training_readers.card,
    "train-config": training_readers.train_config,
    "fakeclass-rounds": training_readers.rounds,
    "convergence-rounds": training_readers.rounds,
}
CARD_FILES = ("model.json", "generator.json")


def guess_kind(name: str, data: Any) -> str:
    """The kind of a JSON file written without one, from its name and keys (run folders of older versions)."""
    if name in CARD_FILES:
        return "zoo-card"
    if name == "config.json":
        return "train-config"
    if name == "profile.json":
        return "robustness-profile"
    if name == "rounds.json":
        return "fakeclass-rounds" if isinstance(data, Mapping) else "convergence-rounds"
    if not isinstance(data, Mapping):
        return "records"
    if "attacks" in data and "eps_curves" in data:
        return "demo-summary"
    if isinstance(data.get("table"), list) and "robust_acc" in data:
        return "strong-eval"
    if isinstance(data.get("summary"), Mapping) and "overall" in data["summary"]:
        return "sparse-result"
    if isinstance(data.get("report"), Mapping):
        return "attack-summary"
    return "results"


def kind_of(name: str, data: Any) -> str:
    """The kind the file says it is, else the guessed one. A card's own ``"kind"`` (e.g. ``"generator"``) names
    what the card describes, so a card file is a card whatever it says."""
    kind = json_kind(data)
    if name in CARD_FILES and kind not in READERS:
        return "zoo-card"
    return kind if isinstance(kind, str) else guess_kind(name, data)


def read_json(section: Section, name: str, data: Any, folder: Path) -> str:
    """Show ``data`` (the JSON file ``name`` of ``folder``) in ``section`` with the reader of its kind; return
    the kind."""
    kind = kind_of(name, data)
    READERS.get(kind, readers.generic)(section, name, data, folder)
    return kind
