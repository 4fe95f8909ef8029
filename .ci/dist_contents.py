"""Check that the built sdist and wheel hold exactly the files of src/alva that git knows.

Usage: python .ci/dist_contents.py REPOSITORY DIST_FOLDER

The wheel must hold every file of the package (code and package data: weights, cards, critics) and nothing else
of it; the sdist must hold the same files under src/, plus what a build from it reads (pyproject.toml, the README
named as the long description) and the CHANGELOG. Exits 1, listing the differences, when they differ.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

SDIST_TOP_LEVEL = {"pyproject.toml", "README.md", "CHANGELOG.md", "MANIFEST.in", "PKG-INFO", "setup.cfg"}


def package_files(repository: Path) -> set[str]:
    """The files of ``src/alva`` that git knows (tracked, or untracked and not ignored), as ``alva/...``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "src/alva"],
                            cwd=repository, check=True, capture_output=True, text=True).stdout
    names = {name for name in listed.split("\0") if name and (repository / name).is_file()}
    return {name.removeprefix("src/") for name in names}


def wheel_files(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return {name for name in archive.namelist() if name.startswith("alva/") and not name.endswith("/")}


def sdist_files(sdist: Path) -> tuple[set[str], set[str]]:
    """The package's files in the sdist (as ``alva/...``) and its other files (setuptools' own metadata left out)."""
    with tarfile.open(sdist) as archive:
        names = [member.name.split("/", 1)[1] for member in archive.getmembers()
                 if member.isfile() and "/" in member.name]
    package = {name.removeprefix("src/") for name in names if name.startswith("src/alva/")}
    others = {name for name in names if not name.startswith(("src/alva/", "src/alva.egg-info/"))}
    return package, others


def differences(what: str, expected: set[str], found: set[str]) -> list[str]:
    lacking = [f"{what} lacks {name}" for name in sorted(expected - found)]
    return lacking + [f"{what} holds {name}, which is not a file of src/alva that git knows"
                      for name in sorted(found - expected)]


def main(repository: Path, dist: Path) -> int:
    expected = package_files(repository)
    (wheel,) = dist.glob("alva-*.whl")
    (sdist,) = dist.glob("alva-*.tar.gz")
    in_sdist, others = sdist_files(sdist)
    problems = differences(wheel.name, expected, wheel_files(wheel)) + differences(sdist.name, expected, in_sdist)
    problems += [f"{sdist.name} lacks {name}" for name in sorted(SDIST_TOP_LEVEL - others)]
    problems += [f"{sdist.name} holds {name}, which a build does not need" for name in sorted(others - SDIST_TOP_LEVEL)]
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        data = sorted(name for name in expected if not name.endswith(".py"))
        print(f"{wheel.name} and {sdist.name}: the {len(expected)} files of src/alva, {len(data)} of them data")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
