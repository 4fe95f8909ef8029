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


def run_example(code: str, path: Path, tmp_path: Path, monkeypatch) -> dict:
    """Run ``code`` (the python of ``path``) in ``tmp_path`` on one thread; returns its global names."""
    # MNIST resolves through the package's default root from any working directory (the repository's data/mnist
    # for an editable install); name it explicitly so that a non-editable install finds it as well.
    if REPO_MNIST.is_dir() and "ALVA_MNIST_ROOT" not in os.environ:
        monkeypatch.setenv("ALVA_MNIST_ROOT", str(REPO_MNIST))
    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    scope: dict = {"__name__": f"docs_{path.stem.replace('-', '_')}"}
    try:
        exec(compile(code, str(path), "exec"), scope)
    finally:
        torch.set_num_threads(before)
    return scope


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
    run_example("\n".join(python), path, tmp_path, monkeypatch)


# --- The README and every page of docs/: links, commands and examples -------------------------------------------

ROOT = DOCS.parent
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks and inline code, where brackets are not links."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """The anchor the forge (and mkdocs, for headings without runs of spaces or hyphens) gives a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base, n = anchor(heading), 0
        name = base
        while name in found:  # repeated headings get -1, -2, ...
            n += 1
            name = f"{base}-{n}"
        found.add(name)
    return found


def broken_links(page: Path, inside: Path | None = None) -> list[str]:
    """Every relative link or image of `page` whose file or anchor is missing (or that leaves `inside`)."""
    problems = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not a file of the repository
            continue
        file_part, _, fragment = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page.resolve()
        if not dest.exists():
            problems.append(f"{page.name}: {target}: no such file")
        elif inside is not None and not dest.is_relative_to(inside.resolve()):
            problems.append(f"{page.name}: {target}: outside {inside.name}/, the documentation site cannot link it")
        elif fragment and (dest.suffix != ".md" or fragment not in anchors(dest)):
            problems.append(f"{page.name}: {target}: no heading with anchor #{fragment}")
    return problems


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / "other.md").write_text("# A heading, with `code`\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-with-code) [ok](other.md#twice-1) ![ok](other.md) [ok](#here) [web](https://x.org)\n"
        "# Here\n`[not a link](missing.md)`\n\n```\n[not a link](missing.md)\n```\n"
        "[bad](missing.md) ![bad](img/none.png) [bad](other.md#nowhere) [bad](#nowhere) [bad](../outside.md)\n",
        encoding="utf-8")
    (tmp_path.parent / "outside.md").write_text("# Outside\n", encoding="utf-8")
    problems = broken_links(page, inside=tmp_path)
    assert len(problems) == 5, problems
    assert [p.split(": ")[1] for p in problems] == [
        "missing.md", "img/none.png", "other.md#nowhere", "#nowhere", "../outside.md"]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_and_image_resolves(page: Path):
    inside = DOCS if page.is_relative_to(DOCS) else None
    assert broken_links(page, inside) == []


def test_every_docs_page_is_in_the_site():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in DOCS.rglob("*.md"):
        assert f" {page.relative_to(DOCS).as_posix()}\n" in config, f"mkdocs.yml does not list {page}"
    for package in ("attacks", "training", "evaluation", "models", "data", "report", "tracking", "defenses"):
        assert f"::: alva.{package}" in (DOCS / "api" / f"{package}.md").read_text(encoding="utf-8")


def readme_commands() -> list[str]:
    return [line for body in blocks(ROOT / "README.md", "bash") for line in body.splitlines()]


def test_the_readme_gives_the_two_commands_and_ci_runs_the_test_command():
    demo = 'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e . && alva demo'
    tests = ('python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 -e ".[dev]" '
             '&& python -m pytest -q')
    assert demo in readme_commands() and tests in readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").replace(" \\\n    ", " ")
    assert tests.replace("pip install ", "pip install -q ") in ci


def all_python_blocks() -> list[tuple[Path, str]]:
    return [(page, body) for page in PAGES for body in blocks(page, "python")]


def test_every_python_block_compiles_and_its_alva_imports_resolve():
    import ast

    for page, body in all_python_blocks():
        tree = ast.parse(body, filename=str(page))  # a SyntaxError names the page
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                statement = ast.unparse(node)
                if "alva" in statement.split()[1]:
                    exec(compile(statement, str(page), "exec"), {})  # an ImportError names the missing name


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    example = blocks(ROOT / "README.md", "python")[0]
    assert len([line for line in example.splitlines() if line and not line.startswith(("from ", "import "))]) <= 5
    scope = run_example(example, ROOT / "README.md", tmp_path, monkeypatch)
    x, result, report = scope["x"], scope["result"], scope["report"]
    assert (result.x_adv - x).abs().max() <= 0.3 + 1e-6
    assert report.robust_acc < report.clean_acc    # the attack lowers the accuracy of the shipped CNN
