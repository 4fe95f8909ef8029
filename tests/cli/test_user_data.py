"""A user's own model code and own 3 x 32 x 32 data through the commands: train, attack, eval, report and
data export, with --data in every form and --trust-code for the run folder that names their code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from user_data import USER_MODELS, write_user_data

from alva.cli.main import main
from alva.models import ModelLoadError, load

BUILD = f"{USER_MODELS}:build"


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> tuple[dict[str, str], Path]:
    """The data in its three forms, and a run folder of the user's ResNet trained on it by ``alva train``."""
    root = tmp_path_factory.mktemp("user")
    specs = write_user_data(root)
    run = root / "run"
    assert main(["train", "--model", BUILD, "--model-kwargs", '{"width": 8}', "--data", specs["cifar"],
                 "--epochs", "2", "--batch-size", "20", "--lr", "0.01", "--seed", "0", "--no-progress",
                 "--out", str(run)]) == 0
    return specs, run


def _summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def test_train_builds_the_users_model_for_the_data_and_its_card_rebuilds_it(user):
    specs, run = user
    info = json.loads((run / "model.json").read_text())
    assert info["factory"] == BUILD and info["kwargs"] == {"width": 8}
    assert info["in_shape"] == [3, 32, 32] and info["num_classes"] == 10 and info["class_names"][0] == "c0"
    assert info["clean_test_accuracy"] > 0.2  # ten classes: it learned (chance is 0.1)
    with pytest.raises(ModelLoadError, match="trust_code=True"):
        load(run)
    model = load(run, trust_code=True)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_a_run_folder_that_names_code_needs_trust_code_and_writes_nothing_without(user, tmp_path, capsys):
    specs, run = user
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(run), "--data", specs["npz"], "--n", "20", "--no-progress",
                 "--out", str(out)]) == 2
    assert "--trust-code" in capsys.readouterr().err and not out.exists()


def test_attack_gives_the_same_figures_on_every_form_of_the_same_data(user, tmp_path):
    specs, run = user
    reports = {}
    for form, spec in specs.items():
        out = tmp_path / form
        assert main(["attack", "--model", str(run), "--trust-code", "--data", spec, "--attack", "pgd",
                     "--steps", "5", "--n", "50", "--curve", "0,4/255,8/255", "--no-progress", "--out", str(out)]) == 0
        reports[form] = _summary(out)
    report = reports["cifar"]["report"]
    assert reports["cifar"]["settings"]["eps"] == pytest.approx(8 / 255)  # the default on RGB data
    assert report["n"] == 50 and report["robust_acc"] <= report["clean_acc"]
    assert report["norms"]["linf"] <= 8 / 255 + 1e-6
    assert [p["eps"] for p in reports["cifar"]["eps_curve"]] == pytest.approx([0, 4 / 255, 8 / 255])
    for form in ("npz", "folder"):
        assert reports[form]["report"] == report, form


def test_eval_runs_the_quick_strong_evaluation_on_the_users_model(user, tmp_path):
    specs, run = user
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(run), "--trust-code", "--data", specs["folder"], "--eps", "4/255",
                 "--version", "quick", "--n", "20", "--no-progress", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["n"] == 20 and result["arguments"]["eps"] == pytest.approx(4 / 255)
    assert result["robust_acc"] <= result["clean_acc"]


def test_report_renders_the_users_run_folders(user, tmp_path):
    specs, run = user
    out = tmp_path / "attack"
    assert main(["attack", "--model", str(run), "--trust-code", "--data", specs["npz"], "--attack", "fgsm",
                 "--n", "20", "--no-curve", "--no-progress", "--out", str(out)]) == 0
    for folder in (run, out):
        assert main(["report", str(folder)]) == 0
        page = (folder / "report.html").read_text()
        assert "<img" in page or "<table" in page


def test_a_factory_model_given_with_its_weights_on_the_command_line(user, tmp_path):
    specs, run = user
    weights = tmp_path / "w.safetensors"
    from safetensors.torch import save_file
    net = load(run, trust_code=True).net
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))
    by_run, by_code = tmp_path / "run", tmp_path / "code"
    common = ["--data", specs["cifar"], "--attack", "fgsm", "--n", "30", "--no-curve", "--no-progress"]
    assert main(["attack", "--model", str(run), "--trust-code", *common, "--out", str(by_run)]) == 0
    assert main(["attack", "--model", BUILD, "--weights", str(weights), *common, "--out", str(by_code)]) == 0
    assert _summary(by_code)["report"] == _summary(by_run)["report"]


@pytest.mark.parametrize("command", [
    ["attack", "--n", "10"], ["eval", "--n", "10", "--version", "quick"], ["train", "--epochs", "1"],
])
@pytest.mark.parametrize("bad", ["model", "data", "fit"])
def test_an_input_that_fails_to_load_or_fit_leaves_no_output_folder(user, tmp_path, capsys, command, bad):
    specs, run = user
    model = {"model": "nope/missing", "data": BUILD, "fit": "mnist/cnn-small" if command[0] != "train" else BUILD}
    data = {"model": specs["npz"], "data": str(tmp_path / "none.npz"), "fit": specs["npz"]}
    argv = [*command, "--model", model[bad], "--data", data[bad], "--no-progress", "--out", str(tmp_path / "out")]
    if command[0] == "train" and bad == "fit":
        argv += ["--model-kwargs", '{"num_classes": 3}']
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"alva {command[0]}: error:") and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_data_export_writes_what_data_reads_back(user, tmp_path):
    specs, _ = user
    assert main(["data", "export", specs["cifar"], "--split", "test", "--format", "npz",
                 "--out", str(tmp_path / "t.npz")]) == 0
    assert main(["data", "export", specs["npz"], "--split", "test", "--out", str(tmp_path / "png")]) == 0
    import alva.data
    original = alva.data.load(specs["cifar"], "test")
    for spec in (tmp_path / "t.npz", tmp_path / "png"):
        back = alva.data.load(str(spec), "test")
        assert torch.equal(back.x, original.x) and torch.equal(back.y, original.y)
    assert main(["data", "export", specs["npz"], "--out", str(tmp_path / "png")]) == 2  # not empty: refused


@pytest.mark.parametrize("eps, expected", [([], 8 / 255), (["--eps", "4/255"], 4 / 255)])
def test_adversarial_training_of_an_architecture_on_rgb_data_takes_an_rgb_budget(user, tmp_path, eps, expected):
    specs, _ = user
    out = tmp_path / "run"
    assert main(["train", "--model", "cnn-small", "--data", specs["folder"], "--adv", "fast", *eps, "--epochs", "1",
                 "--train-size", "40", "--test-size", "20", "--eval-size", "10", "--eval-steps", "2",
                 "--batch-size", "20", "--no-progress", "--out", str(out)]) == 0
    info = json.loads((out / "model.json").read_text())
    assert info["objective"]["eps"] == pytest.approx(expected)
    assert info["architecture"] == "cnn-small" and info["in_shape"] == [3, 32, 32] and info["test_size"] == 20
    assert load(out)(torch.rand(2, 3, 32, 32)).shape == (2, 10)  # an alva architecture runs no user code
