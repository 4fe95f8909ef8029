"""The layer rule of CONTRIBUTING.md: a package imports only from the packages below it, and no private name
crosses a package."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "alva"
# From the top down; a package may import itself and anything after it in this list.
LAYERS = [["cli", "demo"], ["defenses"], ["training"], ["evaluation"], ["report"], ["attacks"], ["models", "data"],
          ["tracking", "results", "units", "distributed", "threads"]]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def part(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported alva package, imported names, line) of every ``alva.`` import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alva."):
            found.append((node.module.split(".")[1], [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name.split(".")[1], [], node.lineno) for a in node.names if a.name.startswith("alva.")]
    return found


def modules() -> list[Path]:
    return [p for p in SRC.rglob("*.py") if p.parent != SRC or p.name not in ("__init__.py",)]


def test_every_package_has_a_layer():
    assert {part(p) for p in modules()} <= set(RANK)


def test_imports_only_point_down():
    upward = [f"{p.relative_to(SRC)}:{line} imports alva.{package}"
              for p in modules() for package, _, line in imports(p)
              if package in RANK and RANK[package] < RANK[part(p)]]
    assert not upward, upward


def test_no_private_name_crosses_a_package():
    private = [f"{p.relative_to(SRC)}:{line} imports {name} from alva.{package}"
               for p in modules() for package, names, line in imports(p)
               for name in names if name.startswith("_") and package != part(p)]
    assert not private, private
