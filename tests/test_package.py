"""The package as users install it: the package data of pyproject.toml covers every file of alva that is not
Python, and the version is written once and agrees with the cards, the CHANGELOG and the README's citation.

A card records the alva version that trained its weights (``alva_version``, written by ``alva train`` and
``alva gan train``). Weights stay valid in later versions, so a card is not stamped again at each release: it
agrees with the package when its version is a released one (a section of CHANGELOG.md) and not newer than
``alva.__version__``. A card that names a newer or an unreleased version misstates how its weights were made.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from safetensors import safe_open

import alva
from alva.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "alva"
ZOO = SRC / "models" / "zoo"
CARDS = sorted(ZOO.rglob("*.json"))


def pyproject() -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pytest brings tomli on Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def release(version: str) -> tuple[int, ...]:
    """``"0.1.0"`` as ``(0, 1, 0)``; anything but a plain release number fails the test that reads it."""
    assert re.fullmatch(r"\d+(\.\d+)*", version), f"{version!r} is not a release number such as 0.1.0"
    return tuple(int(part) for part in version.split("."))


def changelog_sections() -> list[str]:
    """The headings of CHANGELOG.md's sections, newest first: ``Unreleased``, then one version each."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return [match.group(1) for match in re.finditer(r"^## \[?([^\]\s]+)\]?", text, flags=re.MULTILINE)]


def data_files() -> set[str]:
    """Every file under src/alva that is not Python (caches and hidden files left out), relative to it."""
    return {path.relative_to(SRC).as_posix() for path in SRC.rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
            and not path.name.startswith(".")}


def package_data_patterns() -> list[str]:
    return pyproject()["tool"]["setuptools"]["package-data"]["alva"]


def matched(pattern: str) -> set[str]:
    """The files that a package-data pattern ships (setuptools expands it as a recursive glob from src/alva)."""
    return {path.relative_to(SRC).as_posix() for path in SRC.glob(pattern) if path.is_file()}


def test_package_data_covers_every_file_of_alva_that_is_not_python():
    shipped = set().union(*(matched(pattern) for pattern in package_data_patterns()))
    left_out = sorted(data_files() - shipped)
    assert left_out == [], f"not in [tool.setuptools.package-data] of pyproject.toml, so not in the wheel: {left_out}"
    assert {"models/zoo/mnist/cnn-small.safetensors", "models/zoo/mnist/cnn-small.json",
            "models/critics/mnist-acwgan-gp.safetensors"} <= shipped


def test_every_package_data_pattern_ships_a_file():
    assert [pattern for pattern in package_data_patterns() if not matched(pattern)] == []


def test_the_version_is_written_once_in_alva_init():
    project = pyproject()
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "alva.__version__"}
    release(alva.__version__)


def test_alva_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"alva {alva.__version__}"


def test_the_changelog_has_unreleased_work_then_the_current_version():
    sections = changelog_sections()
    assert sections[:2] == ["Unreleased", alva.__version__]
    released = [release(version) for version in sections[1:]]
    assert released == sorted(released, reverse=True) and len(set(released)) == len(released)


def test_the_readme_cites_the_current_version():
    cited = re.findall(r"version\s*=\s*\{([^}]*)\}", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert cited == [alva.__version__]


def test_the_zoo_has_cards():
    assert len(CARDS) >= 10


@pytest.mark.parametrize("card_path", CARDS, ids=[str(p.relative_to(ZOO).with_suffix("")) for p in CARDS])
def test_each_card_records_a_released_version_not_newer_than_alva(card_path: Path):
    card = json.loads(card_path.read_text(encoding="utf-8"))
    with safe_open(str(card_path.with_suffix(".safetensors")), framework="pt") as weights:
        in_header = json.loads((weights.metadata() or {})["alva_card"])
    assert card["alva_version"] == in_header["alva_version"]  # the JSON card and the copy in the weights
    assert release(card["alva_version"]) <= release(alva.__version__)
    assert card["alva_version"] in changelog_sections()[1:], "the card names a version that was never released"
