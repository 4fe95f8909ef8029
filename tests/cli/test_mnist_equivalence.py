"""The MNIST test set exported by ``alva data export`` and read back with ``--data`` gives the figures of
``--data mnist``, as .npz and as a PNG folder (whose files, named by their index, read back in the same order):
the same fixed subset, the same attack and strong-evaluation figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alva.cli.main import main


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mnist-export")
    assert main(["data", "export", "mnist", "--split", "test", "--format", "npz",
                 "--out", str(root / "mnist-test.npz")]) == 0
    assert main(["data", "export", "mnist", "--split", "test", "--out", str(root / "png")]) == 0
    return {"npz": str(root / "mnist-test.npz"), "png": str(root / "png")}


def _run(argv: list[str], out: Path, name: str) -> dict:
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    return json.loads((out / name).read_text())


@pytest.mark.parametrize("form", ["npz", "png"])
def test_the_export_gives_the_attack_figures_of_mnist_on_the_same_subset(exported, tmp_path, form):
    argv = ["attack", "--attack", "pgd", "--steps", "10", "--n", "300", "--curve", "0,0.1,0.3"]
    mnist = _run([*argv, "--data", "mnist"], tmp_path / "mnist", "summary.json")
    other = _run([*argv, "--data", exported[form]], tmp_path / form, "summary.json")
    assert other["report"] == mnist["report"] and other["eps_curve"] == mnist["eps_curve"]
    assert mnist["report"]["n"] == 300 and mnist["report"]["clean_acc"] > 0.9


@pytest.mark.parametrize("form", ["npz", "png"])
def test_the_export_gives_the_strong_evaluation_of_mnist(exported, tmp_path, form):
    argv = ["eval", "--eps", "0.1", "--version", "quick", "--n", "100"]
    mnist = _run([*argv, "--data", "mnist"], tmp_path / "mnist", "result.json")
    other = _run([*argv, "--data", exported[form]], tmp_path / form, "result.json")
    for key in ("n", "clean_acc", "robust_acc", "broken_by", "broken_by_counts"):
        assert other[key] == mnist[key], key
    assert other["report"]["per_class"] == mnist["report"]["per_class"]
    assert 0 < mnist["robust_acc"] < mnist["clean_acc"]


def test_png_export_gives_the_fgsm_figures_of_mnist_on_the_whole_test_set(exported, tmp_path):
    argv = ["attack", "--attack", "fgsm", "--n", "10000", "--no-curve"]
    mnist = _run([*argv, "--data", "mnist"], tmp_path / "mnist", "summary.json")["report"]
    png = _run([*argv, "--data", exported["png"]], tmp_path / "png", "summary.json")["report"]
    for key in ("n", "clean_acc", "robust_acc", "success_rate", "adv_error", "per_class"):
        assert png[key] == mnist[key], key
    assert png == mnist
