"""CONTRIBUTING.md: its python blocks (a new attack, a new norm, a new objective, a new data source) run top to
bottom as one script, and their own asserts check that each part works."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from test_docs import REPO_MNIST, blocks  # this folder, first on sys.path

CONTRIBUTING = Path(__file__).resolve().parents[1] / "CONTRIBUTING.md"


def test_contributing_examples_run(tmp_path, monkeypatch):
    python = blocks(CONTRIBUTING, "python")
    assert len(python) >= 3, "CONTRIBUTING.md lost its examples"
    if REPO_MNIST.is_dir() and "ALVA_MNIST_ROOT" not in os.environ:
        monkeypatch.setenv("ALVA_MNIST_ROOT", str(REPO_MNIST))
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        exec(compile("\n".join(python), str(CONTRIBUTING), "exec"), {"__name__": "contributing"})
    finally:
        torch.set_num_threads(before)
