"""sparse, one-pixel, transfer, detect, advgan and ALVA generate on a user's own model (a small ResNet of
``tests/models/user_models.py``), a user's generator and a generated 3 x 32 x 32 data set, with tiny budgets;
and every command of this group refusing inputs that do not load or fit before it creates its output folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import alva.data
import alva.models
from alva.attacks.sparse import pixel_l0
from alva.cli.main import main
from alva.evaluation.accuracy import accuracy
from alva.training.loop import TrainSettings, fit

TESTS = Path(__file__).resolve().parents[1]
USER_MODEL = f"{TESTS / 'models' / 'user_models.py'}:build"
USER_GENERATOR = f"{TESTS / 'cli' / 'user_generators.py'}:build"
GREY_GENERATOR = f"{TESTS / 'cli' / 'user_generators.py'}:small_grey"
RGB_EPS = 8 / 255


@pytest.fixture(scope="module")
def rgb(tmp_path_factory) -> str:
    """A generated 3 x 32 x 32 data set of 10 classes (brighter images for higher classes), train and test."""
    folder = tmp_path_factory.mktemp("rgb")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 200), ("test", 40)):
        y = torch.arange(n) % 10
        x = (torch.rand(n, 3, 32, 32, generator=g) * 0.5 + 0.05 * y[:, None, None, None]).clamp(0, 1)
        np.savez(folder / f"data-{split}.npz", x=(x * 255).round().to(torch.uint8).numpy(), y=y.numpy())
    return str(folder / "data-{split}.npz")


@pytest.fixture(scope="module")
def weights(rgb, tmp_path_factory) -> str:
    """The user's model trained a little on the training split: a plain state dict, as users have them."""
    torch.manual_seed(0)
    model = alva.models.load(USER_MODEL, in_shape=(3, 32, 32))
    x, y = alva.data.load(rgb, "train").tensors()
    fit(model.train(), (x, y), TrainSettings(epochs=8, batch_size=25, lr=1e-2, seed=0), progress=False)
    x, y = alva.data.load(rgb, "test").tensors()
    assert accuracy(model.eval(), x, y) >= 0.3  # it learnt something: attacks have something to undo
    path = tmp_path_factory.mktemp("weights") / "tiny-resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(path))
    return str(path)


def run_cli(*argv: str) -> int:
    return main([*argv, "--no-progress"])


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_sparse_makes_images_of_the_datas_shape_within_its_pixel_share(rgb, weights, tmp_path):
    out = tmp_path / "sparse"
    assert run_cli("sparse", "--data", rgb, "--model", USER_MODEL, "--weights", weights, "--target", "0,7",
                "--n-per-class", "2", "--steps", "40", "--confidence", "0.5", "--out", str(out)) == 0
    result = read(out / "result.json")
    assert result["settings"]["max_pixels"] == round(300 * 32 * 32 / 784)  # the MNIST share of the pixels
    images = load_file(str(out / "images.safetensors"))
    assert images["x"].shape == (4, 3, 32, 32) and images["target"].tolist() == [0, 0, 7, 7]
    assert images["x"].min() >= 0 and images["x"].max() <= 1
    ok = images["success"].bool()
    assert ok.any()  # class 0, the darkest, is reached
    assert (pixel_l0(images["x"][ok], 0.0, 1e-3) <= 392).all()
    assert (out / "grid.png").exists()


def test_sparse_takes_the_pixel_bound_as_a_fraction(rgb, tmp_path):
    out = tmp_path / "sparse"
    assert run_cli("sparse", "--data", rgb, "--model", USER_MODEL, "--target", "3", "--n-per-class", "1",
                "--steps", "5", "--max-pixels", "1/8", "--out", str(out)) == 0
    assert read(out / "result.json")["settings"]["max_pixels"] == 128


def test_one_pixel_attacks_the_test_images_of_the_data(rgb, weights, tmp_path):
    out = tmp_path / "de"
    assert run_cli("one-pixel", "--data", rgb, "--model", USER_MODEL, "--weights", weights, "--n", "10",
                "--pixels", "3", "--popsize", "8",
                "--generations", "2", "--out", str(out)) == 0
    summary = read(out / "summary.json")
    assert summary["report"]["n"] == 10
    assert 0 < summary["report"]["norms"]["l0"] <= 3 * 3  # DE sets at most 3 pixels: 9 values of 3 channels
    assert summary["settings"]["data"] == rgb


def test_transfer_from_a_user_architecture_stays_in_the_rgb_budget(rgb, weights, tmp_path):
    out = tmp_path / "transfer"
    assert run_cli("transfer", "--data", rgb, "--target", USER_MODEL, "--target-weights", weights,
                "--substitute-arch", USER_MODEL,
                "--queries", "40", "--epochs", "1", "--n", "20", "--steps", "3", "--batch-size", "10",
                "--out", str(out)) == 0
    summary = read(out / "summary.json")
    assert summary["settings"]["eps"] == pytest.approx(RGB_EPS)  # the RGB default
    row = summary["results"][0]
    assert row["training_queries"] == 40
    assert row["max_linf"] <= RGB_EPS + 1e-6
    assert row["target_clean_acc"] >= 0.3  # the trained target, attacked on the test images of the data
    assert 0 <= row["transfer_success"] <= 1


def test_detect_on_rgb_data_with_a_user_generator_for_the_alva_row(rgb, weights, tmp_path):
    out = tmp_path / "detect"
    assert run_cli("detect", "--data", rgb, "--model", USER_MODEL, "--weights", weights,
                "--generator", USER_GENERATOR, "--train-size", "40",
                "--epochs", "1", "--n", "20", "--n-sparse", "10", "--sparse-steps", "5", "--n-alva", "10",
                "--steps", "3", "--eps", "4/255", "--batch-size", "20", "--out", str(out)) == 0
    summary = read(out / "summary.json")
    names = [r["attack"] for r in summary["rows"]]
    assert names[:4] == ["fgsm", "pgd", "sparse", "alva"]
    assert all(0 <= r["auc"] <= 1 for r in summary["rows"])
    assert summary["settings"]["eps"] == pytest.approx(4 / 255)


def test_detect_skips_the_alva_row_on_rgb_data_without_a_generator(rgb, tmp_path):
    out = tmp_path / "detect"
    assert run_cli("detect", "--data", rgb, "--model", USER_MODEL, "--train-size", "20", "--epochs", "1", "--n", "10",
                "--n-sparse", "10", "--sparse-steps", "2", "--steps", "2", "--out", str(out)) == 0
    assert "alva" not in [r["attack"] for r in read(out / "summary.json")["rows"]]


def test_advgan_trains_and_attacks_on_rgb_data(rgb, weights, tmp_path):
    out = tmp_path / "advgan"
    assert run_cli("advgan", "train", "--data", rgb, "--model", USER_MODEL, "--weights", weights,
                "--epochs", "1", "--train-size", "40",
                "--batch-size", "20", "--width", "4", "--n-eval", "20", "--out", str(out)) == 0
    trained = read(out / "summary.json")
    assert trained["eps"] == pytest.approx(RGB_EPS) and trained["oracle"] == "none"
    assert (out / "generator.safetensors").exists()
    attacked = tmp_path / "attack"
    assert run_cli("advgan", "attack", "--data", rgb, "--model", USER_MODEL, "--weights", weights, "--generator",
                str(out), "--n-eval", "20", "--eps", "2/255", "--out", str(attacked)) == 0
    summary = read(attacked / "summary.json")
    assert summary["eps"] == pytest.approx(2 / 255) and 0 <= summary["success"] <= 1


def test_alva_generate_with_a_user_generator_writes_images_of_its_shape(tmp_path):
    out = tmp_path / "generate"
    assert run_cli("alva", "generate", "--classifier", USER_MODEL, "--generator", USER_GENERATOR, "--oracle", "none",
                "--n", "20", "--chunk-size", "10", "--keep", "all", "--out", str(out)) == 0
    data = load_file(str(out / "dataset.safetensors"))
    assert data["x"].shape == (20, 3, 32, 32) and set(data["y"].tolist()) <= set(range(10))
    assert read(out / "summary.json")["generated"] == 20


def test_converge_retrains_a_user_model_on_alva_samples_of_a_user_generator(rgb, weights, tmp_path):
    out = tmp_path / "converge"
    assert run_cli("converge", "--data", rgb, "--classifier", USER_MODEL, "--classifier-weights", weights,
                   "--generator", USER_GENERATOR, "--oracle", USER_MODEL, "--oracle-weights", weights,
                   "--rounds", "1", "--threshold", "0", "--n", "20", "--n-eval", "20", "--chunk-size", "10",
                   "--eps", "2", "--out", str(out)) == 0
    rounds = read(out / "rounds.json")
    assert [r["round"] for r in rounds] == [0, 1] and 0 <= rounds[1]["metrics"]["clean_test_acc"] <= 1
    assert alva.models.load(out, trust_code=True)(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_fakeclass_expands_a_user_model_to_2k_classes_on_rgb_data(rgb, weights, tmp_path):
    out = tmp_path / "fakeclass"
    assert run_cli("fakeclass", "--data", rgb, "--classifier", USER_MODEL, "--classifier-weights", weights,
                   "--rounds", "1", "--per-class", "1", "--test-per-class", "1", "--steps", "20", "--de-per-class", "1",
                   "--de-pixels", "5", "--de-popsize", "6", "--de-generations", "2", "--reference-epochs", "1",
                   "--reference-per-class", "1", "--eval-train-size", "40", "--eval-test-size", "40",
                   "--nn-pool-size", "40", "--sample", "10", "--out", str(out)) == 0
    state = read(out / "rounds.json")
    assert state["settings"]["num_classes"] == 10 and state["settings"]["attack"]["max_pixels"] == 392
    assert state["data"]["test"] == 40 and len(state["rounds"]) == 2
    trained = alva.models.load(out / "model.safetensors", trust_code=True)
    assert trained(torch.zeros(2, 3, 32, 32)).shape == (2, 20)  # K real and K fake classes


REFUSED = {
    "sparse, a factory file that does not exist": (
        ["sparse", "--model", "nowhere.py:build"], "nowhere.py"),
    "one-pixel, an MNIST model on RGB data": (
        ["one-pixel", "--model", "mnist/cnn-small", "--data", "RGB"], "3x32x32"),
    "transfer, an unknown substitute": (
        ["transfer", "--data", "RGB", "--target", USER_MODEL, "--substitute-arch", "resnet-9000"], "resnet-9000"),
    "detect, a generator of other images": (
        ["detect", "--data", "RGB", "--model", USER_MODEL, "--generator", GREY_GENERATOR], "1x16x16"),
    "detect, a detector that cannot be built": (
        ["detect", "--data", "RGB", "--model", USER_MODEL, "--architecture", "nope"], "nope"),
    "advgan train, the MNIST oracle on RGB data": (
        ["advgan", "train", "--data", "RGB", "--model", USER_MODEL, "--oracle", "mnist/mlp"], "3x32x32"),
    "advgan attack, no generator there": (
        ["advgan", "attack", "--data", "RGB", "--model", USER_MODEL, "--generator", "missing-run"], "missing-run"),
    "alva generate, a generator of other images": (
        ["alva", "generate", "--classifier", USER_MODEL, "--generator", GREY_GENERATOR], "1x16x16"),
    "converge, the MNIST generator on RGB data": (
        ["converge", "--data", "RGB", "--classifier", USER_MODEL], "1x28x28"),
    "fakeclass, an MNIST classifier on RGB data": (
        ["fakeclass", "--data", "RGB"], "3x32x32"),
    "attack-label, single-label data": (
        ["attack-label", "--data", "RGB", "--model", USER_MODEL], "multi-label"),
    "gan train, images of another shape": (
        ["gan", "train", "--data", "RGB"], "1x28x28"),
    "atgan finetune, the MNIST generator on RGB data": (
        ["atgan", "finetune", "--data", "RGB", "--classifier", USER_MODEL], "1x28x28"),
}


@pytest.mark.parametrize("argv, message", REFUSED.values(), ids=REFUSED.keys())
def test_a_command_that_cannot_start_says_why_and_creates_nothing(rgb, tmp_path, capsys, argv, message):
    out = tmp_path / "run" / "out"
    argv = [rgb if a == "RGB" else a for a in argv]
    assert run_cli(*argv, "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
