"""The tutorials in docs/: the python blocks of each one run top to bottom as one script (a pytest case per file)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
REPO_MNIST = DOCS.parent / "data" / "mnist"
TUTORIALS = sorted(p for p in DOCS.glob("*.md") if p.name != "README.md")
BLOCK = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(path: Path, language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(path.read_text(encoding="utf-8")) if lang == language]


def test_the_tutorials_are_there():
    names = {p.name for p in TUTORIALS}
    assert {"alva.md", "sparse-and-fake-class.md", "adversarial-training-and-evaluation.md", "multi-label.md",
            "black-box-and-generators.md"} <= names
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for name in names:
        assert name in index, f"docs/README.md does not link {name}"


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path, monkeypatch):
    python, shell = blocks(path, "python"), blocks(path, "bash")
    assert python, f"{path.name} has no ```python block"
    assert shell, f"{path.name} has no ```bash block"
    # MNIST resolves through the package's default root from any working directory (the repository's data/mnist
    # for an editable install); name it explicitly so that a non-editable install finds it as well.
    if REPO_MNIST.is_dir() and "ALVA_MNIST_ROOT" not in os.environ:
        monkeypatch.setenv("ALVA_MNIST_ROOT", str(REPO_MNIST))
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = compile("\n".join(python), str(path), "exec")
        exec(code, {"__name__": f"docs_{path.stem.replace('-', '_')}"})
    finally:
        torch.set_num_threads(before)
