"""Bad input, as a new user gives it, to every command: each is refused before any work with exit status 2 and
one line on stderr naming the problem (no traceback), and nothing on disk is written or changed.

Each row of the table is one mistake. The commands run in-process on tiny data written to a temporary folder
(see bad_input_world.py); tests/test_bad_input_api.py holds the mistakes made through the Python API.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from bad_input_world import make_world, snapshot

from alva.cli import checks
from alva.cli.main import build_parser, main


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    return make_world(tmp_path_factory.mktemp("bad-input"))


A = ["attack", "--data", "{data}", "--n", "10", "--steps", "2", "--no-curve", "--no-progress", "--out", "{out}"]
E = ["eval", "--data", "{data}", "--n", "10", "--version", "quick", "--no-sanity", "--no-progress", "--out", "{out}"]
T = ["train", "--data", "{data}", "--model", "softmax", "--epochs", "1", "--no-progress", "--out", "{out}"]
G = ["alva", "generate", "--n", "10", "--no-progress", "--out", "{out}"]


NO_GPU = "cuda:99"
"""A CUDA device no machine here has: without a GPU, or with fewer than 100, the same refusal."""


def swap(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with the value of ``option`` replaced."""
    at = argv.index(option)
    return [*argv[:at + 1], value, *argv[at + 2:]]


CLI_CASES = [
    # options: counts, ranges, numbers that are not finite, devices, output paths
    ("attack-batch-size-negative", [*A, "--batch-size", "-1"], "--batch-size must be >= 1, got -1"),
    ("attack-batch-size-zero", [*A, "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ("attack-n-zero", swap(A, "--n", "0"), "--n must be >= 1, got 0"),
    ("attack-steps-zero", swap(A, "--steps", "0"), "--steps must be >= 1, got 0"),
    ("attack-restarts-zero", [*A, "--restarts", "0"], "--restarts must be >= 1"),
    ("attack-eps-nan", [*A, "--eps", "nan"], "argument --eps: expected a finite number"),
    ("attack-eps-negative", [*A, "--eps", "-0.1"], "argument --eps"),
    ("attack-alpha-division-by-zero", [*A, "--alpha", "1/0"], "argument --alpha"),
    ("attack-curve-nan", [*A[:-3], "--curve", "0.1,nan", "--out", "{out}"], "argument --curve"),
    ("attack-device-cuda-absent", [*A, "--device", NO_GPU], f"--device {NO_GPU}: "),
    ("attack-device-unknown", [*A, "--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    ("attack-out-is-a-file", swap(A, "--out", "{file}"), "is a file, not a folder"),
    ("attack-out-under-a-file", swap(A, "--out", "{file}/run"), "a file stands on its path"),
    ("attack-option-unknown", [*A, "--option", "n_queries=10"], "pgd has no option 'n_queries'"),
    ("attack-option-without-value", [*A, "--option", "steps"], "--option takes NAME=VALUE"),
    ("attack-flag-of-another-attack", [*A, "--attack", "fgsm"],
     "--steps: not a setting of --attack fgsm"),
    ("attack-unknown-attack", [*A, "--attack", "pgdd"], "invalid choice: 'pgdd'"),
    ("attack-abbreviated-option", [*A, "--batch", "10"], "unrecognized arguments: --batch"),
    ("version-abbreviated", ["--ver"], "unrecognized arguments: --ver (option names are never abbreviated)"),
    ("attack-resize-zero", [*A, "--resize", "0x0"], "argument --resize"),
    # the model: loads, fits the data, one finite row of logits per image, the task of the command
    ("attack-model-unknown", [*A, "--model", "mnist/cnn-smal"], "mnist/cnn-smal"),
    ("attack-model-pickle-beside-safetensors", [*A, "--model", "{pt}"], "is a pickle, which alva never loads"),
    ("attack-model-truncated", [*A, "--model", "{truncated}"], "truncated.safetensors"),
    ("attack-model-nan-logits", [*A, "--model", "{models}:nan_model"], "gives NaN or infinite logits"),
    ("attack-model-inf-logits", [*A, "--model", "{models}:inf_model"], "gives NaN or infinite logits"),
    ("attack-model-flat-logits", [*A, "--model", "{models}:flat"], "expected logits of shape (2, classes)"),
    ("attack-model-3d-logits", [*A, "--model", "{models}:extra"], "expected logits of shape (2, classes)"),
    ("attack-model-tuple", [*A, "--model", "{models}:pair"], "gives tuple for two images"),
    ("attack-model-missing-function", [*A, "--model", "{models}:nope"], "nope"),
    ("attack-model-multilabel", [*A, "--model", "{multilabel}"], "is a multilabel model"),
    ("attack-model-kwargs-not-object", [*A, "--model", "{models}:flat", "--model-kwargs", "[1]"],
     "--model-kwargs must be a JSON object"),
    ("attack-model-bounds-reversed", [*A, "--model", "{models}:nan_model", "--bounds", "1,0"], "bounds must be"),
    ("attack-model-std-zero", [*A, "--model", "{models}:nan_model", "--mean", "0", "--std", "0"],
     "std must be positive"),
    ("attack-weights-for-zoo-model", [*A, "--weights", "{pt}"], "apply to FILE.py:FUNCTION models only"),
    # the data: exists, shape, range, labels
    ("attack-data-missing", swap(A, "--data", "{root}/nope.npz"), "no such file"),
    ("attack-data-0-255", swap(A, "--data", "{data255}"), "float images must lie in [0, 1]"),
    ("attack-data-nan", swap(A, "--data", "{datanan}"), "images contain NaN"),
    ("attack-data-11-classes", swap(A, "--data", "{data11}"), "gives 10 outputs but the data"),
    ("attack-data-negative-label", swap(A, "--data", "{dataneg}"), "labels must not be negative"),
    ("attack-data-5d", swap(A, "--data", "{data5d}"), "images must be N x C x H x W"),
    ("attack-data-rgb-for-gray-model", swap(A, "--data", "{datargb}"), "does not take inputs of shape 3x28x28"),
    ("attack-data-fewer-labels", swap(A, "--data", "{datashort}"), "20 images but 10 labels"),
    ("attack-data-fractional-labels", swap(A, "--data", "{datafloaty}"), "labels must be whole numbers"),
    ("attack-split-unknown", [*A, "--split", "validation"], "validation"),
    ("eval-batch-size-negative", [*E, "--batch-size", "-1"], "--batch-size must be >= 1"),
    ("eval-threads-zero", [*E, "--threads", "0"], "--threads must be >= 1"),
    ("attack-threads-negative", [*A, "--threads", "-1"], "--threads must be >= 1, got -1"),
    ("threads-zero-before-the-command", ["--threads", "0", *T], "--threads must be >= 1, got 0"),
    ("threads-not-a-whole-number", ["--threads", "1.5", *T], "argument --threads: invalid int value: '1.5'"),
    ("eval-model-nan-logits", [*E, "--model", "{models}:nan_model"], "gives NaN or infinite logits"),
    ("eval-model-multilabel", [*E, "--model", "{multilabel}"], "is a multilabel model"),
    ("eval-device-cuda-absent", [*E, "--device", NO_GPU], "CUDA GPU"),
    ("eval-attacks-empty", [*E, "--attacks", ","], "argument --attacks"),
    ("eval-data-0-255", swap(E, "--data", "{data255}"), "float images must lie in [0, 1]"),
    ("train-epochs-zero", swap(T, "--epochs", "0"), "--epochs must be >= 1"),
    ("train-batch-size-negative", [*T, "--batch-size", "-1"], "--batch-size must be >= 1"),
    ("train-lr-nan", [*T, "--lr", "nan"], "--lr must be a finite number"),
    ("train-lr-infinite", [*T, "--lr", "inf"], "--lr must be a finite number"),
    ("train-lr-zero", [*T, "--lr", "0"], "--lr must be in (0, inf)"),
    ("train-momentum-nan", [*T, "--momentum", "nan"], "--momentum must be a finite number"),
    ("train-momentum-one", [*T, "--momentum", "1"], "--momentum must be in [0, 1)"),
    ("train-weight-decay-negative", [*T, "--weight-decay", "-1"], "--weight-decay must be in [0, inf)"),
    ("train-train-size-zero", [*T, "--train-size", "0"], "--train-size must be >= 1"),
    ("train-eval-size-negative", [*T, "--adv", "pgd", "--eval-size", "-1"], "--eval-size must be >= 0"),
    ("train-mix-above-one", [*T, "--adv", "fgsm-mix", "--mix", "2"], "--mix must be in [0, 1]"),
    ("train-beta-nan", [*T, "--adv", "trades", "--beta", "nan"], "--beta must be a finite number"),
    ("train-flag-of-another-objective", [*T, "--beta", "1"], "--beta is a setting of --adv trades"),
    ("train-data-0-255", swap(T, "--data", "{data255}"), "float images must lie in [0, 1]"),
    ("train-data-nan", swap(T, "--data", "{datanan}"), "images contain NaN"),
    ("train-architecture-unknown", swap(T, "--model", "resnet9"), "is neither an architecture"),
    ("train-mean-of-other-channels", [*T, "--mean", "0.1,0.2", "--std", "0.3,0.3"],
     "mean and std have 2 values but the images have 1 channel"),
    ("train-images-too-small-for-the-model", [*swap(T, "--model", "cnn-small"), "--resize", "1x1"],
     "model 'cnn-small' does not take inputs of shape 1x1x1"),
    ("train-device-cuda-absent", [*T, "--device", NO_GPU], "CUDA GPU"),
    ("train-abbreviated-resume", [*T, "--res"], "unrecognized arguments: --res"),
    ("alva-generate-n-zero", swap(G, "--n", "0"), "--n must be >= 1"),
    ("alva-generate-chunk-size-zero", [*G, "--chunk-size", "0"], "--chunk-size must be >= 1"),
    ("alva-generate-nan-classifier", [*G, "--classifier", "{models}:nan_model"], "gives NaN or infinite logits"),
    ("alva-generate-multilabel-classifier", [*G, "--classifier", "{multilabel}"], "is a multilabel model"),
    ("gan-train-critic-steps-zero", ["gan", "train", "--n-critic", "0", "--out", "{out}"], "--n-critic must be"),
    ("attack-label-steps-zero", ["attack-label", "--steps", "0", "--out", "{out}"], "--steps must be"),
    ("sparse-confidence-above-one", ["sparse", "--confidence", "2", "--out", "{out}"], "--confidence must be in"),
    ("sparse-target-not-a-class", ["sparse", "--target", "11", "--n-per-class", "1", "--out", "{out}"],
     "--target classes must be in [0, 9]"),
    ("transfer-queries-zero", ["transfer", "--queries", "0", "--out", "{out}"], "--queries must be >= 1"),
    ("detect-fpr-above-one", ["detect", "--fpr", "2", "--out", "{out}"], "--fpr must be in [0, 1)"),
    ("fakeclass-rounds-zero", ["fakeclass", "--rounds", "0", "--out", "{out}"], "--rounds must be >= 1"),
    ("fakeclass-threshold-nan", ["fakeclass", "--threshold", "nan", "--out", "{out}"], "--threshold must be a finite"),
    ("converge-lr-negative", ["converge", "--lr", "-1", "--out", "{out}"], "--lr must be in (0, inf)"),
    ("one-pixel-n-zero", ["one-pixel", "--n", "0", "--out", "{out}"], "--n must be >= 1"),
    ("advgan-train-epochs-zero", ["advgan", "train", "--epochs", "0", "--out", "{out}"], "--epochs must be"),
    ("atgan-finetune-epochs-zero", ["atgan", "finetune", "--epochs", "0", "--out", "{out}"], "--epochs must be"),
    ("demo-epochs-zero", ["demo", "--epochs", "0", "--out", "{out}"], "--epochs must be >= 1"),
    ("report-out-is-a-folder", ["report", "{root}", "--out", "{root}"], "is a folder; give the file to write"),
    ("report-no-run-folder", ["report", "{root}/nope"], "no run folder"),
    ("report-depth-negative", ["report", "{root}", "--depth", "-1"], "--depth must be >= 0"),
    ("zoo-unknown-model", ["zoo", "mnist/nope"], "no model 'mnist/nope'"),
    ("data-info-missing-file", ["data", "info", "{root}/nope.npz"], "no such file"),
    ("data-export-out-is-a-file", ["data", "export", "{data}", "--out", "{file}"], "is a file, not a folder"),
]


def filled(argv: list[str], names: dict[str, str]) -> list[str]:
    return [a.format(**names) for a in argv]


ENV_CASES = [
    # the environment: the thread count of every command
    ("alva-threads-not-a-number", {"ALVA_THREADS": "abc"}, A, "ALVA_THREADS must be a whole number >= 1, got 'abc'"),
    ("alva-threads-zero", {"ALVA_THREADS": "0"}, T, "ALVA_THREADS must be a whole number >= 1, got '0'"),
]


def refused(argv: list[str], message: str, world: dict[str, str], tmp_path: Path, capsys) -> None:
    """Run ``argv`` and check that it is refused as every row says: exit status 2, the message on one line of
    stderr, no traceback, nothing written or changed."""
    names = {**world, "out": str(tmp_path / "out")}
    before, here = snapshot(Path(world["root"])), snapshot(tmp_path)
    try:
        code = main(filled(argv, names))
    except SystemExit as stop:  # argparse refuses what it parses itself, with status 2
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2
    assert message.format(**names) in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 or "usage:" in err  # argparse adds its usage line
    assert snapshot(Path(world["root"])) == before and snapshot(tmp_path) == here


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # torch, building a model for 1x1 images
@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_command_refuses_bad_input_with_one_line_and_writes_nothing(world, tmp_path, monkeypatch, capsys,
                                                                      argv, message):
    monkeypatch.chdir(tmp_path)  # anything a command wrote by a relative path would land here
    refused(argv, message, world, tmp_path, capsys)


@pytest.mark.parametrize("env, argv, message", [c[1:] for c in ENV_CASES], ids=[c[0] for c in ENV_CASES])
def test_a_bad_environment_is_refused_with_one_line_and_nothing_written(world, tmp_path, monkeypatch, capsys,
                                                                        env, argv, message):
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    refused(argv, message, world, tmp_path, capsys)


def test_debug_shows_the_traceback(world, tmp_path):
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        main([*filled(A, {**world, "out": str(tmp_path / "o")}), "--batch-size", "-1", "--debug"])
    assert not (tmp_path / "o").exists()


def leaf_parsers(parser: argparse.ArgumentParser, name: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command and action of ``parser`` that runs something, with its name."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(name, parser)]
    return [leaf for sub in subs for n, p in sub.choices.items() for leaf in leaf_parsers(p, f"{name} {n}".strip())]


def test_the_defaults_of_every_command_pass_the_checks():
    leaves = leaf_parsers(build_parser())
    assert len(leaves) > 20
    for name, parser in leaves:
        defaults = {a.dest: a.default for a in parser._actions if a.dest != "help" and a.default is not None}
        try:
            checks.check_numbers(argparse.Namespace(**defaults))
        except checks.OptionError as err:
            pytest.fail(f"alva {name}: {err}")


def test_the_table_covers_every_command():
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    tried = {c[1][0] for c in CLI_CASES if not c[1][0].startswith("-")}
    assert commands - tried == set()


def test_infinity_in_the_metrics_does_not_break_the_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train": {"loss": Infinity}, "eval": {"clean_acc": NaN}}\n'
                                       '{"epoch": 2, "train": {"loss": -Infinity}, "eval": {"clean_acc": 0.5}}\n')
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert "inf" in (tmp_path / "report.html").read_text()
