"""CONTRIBUTING.md: its python blocks (a new attack, a new norm, a new objective) run top to bottom as one script,
and their own asserts check that each part works."""

from __future__ import annotations

from pathlib import Path

from test_docs import blocks, run_example  # this folder, first on sys.path

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def test_contributing_examples_run(tmp_path, monkeypatch):
    python = blocks(CONTRIBUTING, "python")
    assert len(python) >= 3, "CONTRIBUTING.md lost its examples"
    run_example("\n".join(python), CONTRIBUTING, tmp_path, monkeypatch)
