"""Bad input, as a new user gives it, to every command and to the Python API: each is refused before any work
with one clear error (exit status 2 and one line on stderr naming the problem for a command; the error type for
the API), and nothing on disk is written or changed.

Each row of the tables is one mistake. The commands run in-process on tiny data written to a temporary folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import alva.data
import alva.models
from alva.attacks import PGD, AttackInputError
from alva.attacks.errors import ModelFailedError, ModelOutputError
from alva.cli.main import main
from alva.data import DataError
from alva.evaluation import evaluate_attack
from alva.evaluation.strong import StrongEvaluation
from alva.models import ModelLoadError
from alva.training import TrainSettings, fit
from alva.training.loop import TrainingDataError

USER_MODELS = '''
import torch
from torch import nn


class Linear(nn.Module):
    def __init__(self, scale=1.0, shape="rows"):
        super().__init__()
        self.lin, self.scale, self.shape = nn.Linear(784, 10), scale, shape

    def forward(self, x):
        logits = self.lin(x.flatten(1)) * self.scale
        return {"rows": logits, "flat": logits[:, 0], "extra": logits[..., None], "pair": (logits, logits)}[self.shape]


def nan_model():
    return Linear(float("nan"))


def inf_model():
    return Linear(float("inf"))


def flat():
    return Linear(shape="flat")


def extra():
    return Linear(shape="extra")


def pair():
    return Linear(shape="pair")
'''


def write_split_files(root: Path, name: str, x: np.ndarray, y: np.ndarray) -> str:
    for split in ("train", "test"):
        np.savez(root / f"{name}-{split}.npz", x=x, y=y)
    return str(root / f"{name}-{{split}}.npz")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """Tiny data sets (a good one and broken ones), the user's broken models, a file, and a model whose card
    says multi-label: the names the tables below use in braces."""
    root = tmp_path_factory.mktemp("bad-input")
    x = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)
    y = np.arange(20) % 10
    nan_x = x.copy()
    nan_x[3, 0, 5, 5] = np.nan
    names = {
        "data": write_split_files(root, "good", x, y),
        "data255": write_split_files(root, "x255", x * 255, y),
        "datanan": write_split_files(root, "xnan", nan_x, y),
        "data11": write_split_files(root, "y11", x, np.arange(20) % 11),
        "dataneg": write_split_files(root, "yneg", x, y - 1),
        "data5d": write_split_files(root, "x5d", x[:, None], y),
        "datargb": write_split_files(root, "rgb", np.repeat(x, 3, axis=1), y),
        "datashort": write_split_files(root, "short", x, y[:10]),
        "datafloaty": write_split_files(root, "yfloat", x, y + 0.5),
    }
    (root / "models.py").write_text(USER_MODELS)
    (root / "a-file").write_text("not a folder")
    (root / "weights.pt").write_bytes(b"\x80\x04not really a pickle")
    model = alva.models.load("mnist/cnn-small")
    alva.models.save(model, {**model.card, "task": "multilabel"}, root / "multilabel.safetensors")
    return {**names, "root": str(root), "models": str(root / "models.py"), "file": str(root / "a-file"),
            "pt": str(root / "weights.pt"), "multilabel": str(root / "multilabel.safetensors")}


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``root``: size, modification time and SHA-256 of its bytes."""
    state = {}
    for path in sorted(root.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "folder"
        state[str(path.relative_to(root))] = (path.stat().st_size if path.is_file() else 0, path.stat().st_mtime_ns,
                                              digest)
    return state


A = ["attack", "--data", "{data}", "--n", "10", "--steps", "2", "--no-curve", "--no-progress", "--out", "{out}"]
E = ["eval", "--data", "{data}", "--n", "10", "--version", "quick", "--no-sanity", "--no-progress", "--out", "{out}"]
T = ["train", "--data", "{data}", "--model", "softmax", "--epochs", "1", "--no-progress", "--out", "{out}"]
G = ["alva", "generate", "--n", "10", "--no-progress", "--out", "{out}"]


def swap(argv: list[str], option: str, value: str) -> list[str]:
    """``argv`` with the value of ``option`` replaced."""
    at = argv.index(option)
    return [*argv[:at + 1], value, *argv[at + 2:]]


CLI_CASES = [
    # options: counts, ranges, numbers that are not finite, devices, output paths
    ("attack-batch-size-negative", [*A, "--batch-size", "-1"], "--batch-size must be an integer >= 1, got -1"),
    ("attack-batch-size-zero", [*A, "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    ("attack-n-zero", swap(A, "--n", "0"), "--n must be an integer >= 1, got 0"),
    ("attack-steps-zero", swap(A, "--steps", "0"), "--steps must be an integer >= 1, got 0"),
    ("attack-restarts-zero", [*A, "--restarts", "0"], "--restarts must be an integer >= 1"),
    ("attack-eps-nan", [*A, "--eps", "nan"], "argument --eps: expected a finite number"),
    ("attack-eps-negative", [*A, "--eps", "-0.1"], "argument --eps"),
    ("attack-alpha-division-by-zero", [*A, "--alpha", "1/0"], "argument --alpha"),
    ("attack-curve-nan", [*A[:-3], "--curve", "0.1,nan", "--out", "{out}"], "argument --curve"),
    ("attack-device-cuda", [*A, "--device", "cuda"], "--device cuda: no CUDA GPU is available"),
    ("attack-device-unknown", [*A, "--device", "gpu0"], "--device 'gpu0' is not a torch device"),
    ("attack-out-is-a-file", swap(A, "--out", "{file}"), "is a file, not a folder"),
    ("attack-out-under-a-file", swap(A, "--out", "{file}/run"), "a file stands on its path"),
    ("attack-option-unknown", [*A, "--option", "n_queries=10"], "pgd has no option 'n_queries'"),
    ("attack-option-without-value", [*A, "--option", "steps"], "--option takes NAME=VALUE"),
    ("attack-unknown-attack", [*A, "--attack", "pgdd"], "invalid choice: 'pgdd'"),
    ("attack-abbreviated-option", [*A, "--batch", "10"], "unrecognized arguments: --batch"),
    ("attack-resize-zero", [*A, "--resize", "0x0"], "argument --resize"),
    # the model: loads, fits the data, one finite row of logits per image, the task of the command
    ("attack-model-unknown", [*A, "--model", "mnist/cnn-smal"], "mnist/cnn-smal"),
    ("attack-model-pickle", [*A, "--model", "{pt}"], "is a pickle, which alva never loads"),
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
    ("eval-batch-size-negative", [*E, "--batch-size", "-1"], "--batch-size must be an integer >= 1"),
    ("eval-threads-zero", [*E, "--threads", "0"], "--threads must be an integer >= 1"),
    ("eval-model-nan-logits", [*E, "--model", "{models}:nan_model"], "gives NaN or infinite logits"),
    ("eval-model-multilabel", [*E, "--model", "{multilabel}"], "is a multilabel model"),
    ("eval-device-cuda", [*E, "--device", "cuda:0"], "no CUDA GPU is available"),
    ("eval-attacks-empty", [*E, "--attacks", ","], "argument --attacks"),
    ("eval-data-0-255", swap(E, "--data", "{data255}"), "float images must lie in [0, 1]"),
    ("train-epochs-zero", swap(T, "--epochs", "0"), "--epochs must be an integer >= 1"),
    ("train-batch-size-negative", [*T, "--batch-size", "-1"], "--batch-size must be an integer >= 1"),
    ("train-lr-nan", [*T, "--lr", "nan"], "--lr must be a finite number"),
    ("train-lr-infinite", [*T, "--lr", "inf"], "--lr must be a finite number"),
    ("train-lr-zero", [*T, "--lr", "0"], "--lr must be in (0, inf)"),
    ("train-momentum-nan", [*T, "--momentum", "nan"], "--momentum must be a finite number"),
    ("train-momentum-one", [*T, "--momentum", "1"], "--momentum must be in [0, 1)"),
    ("train-weight-decay-negative", [*T, "--weight-decay", "-1"], "--weight-decay must be in [0, inf)"),
    ("train-train-size-zero", [*T, "--train-size", "0"], "--train-size must be an integer >= 1"),
    ("train-eval-size-negative", [*T, "--adv", "pgd", "--eval-size", "-1"], "--eval-size must be an integer >= 0"),
    ("train-mix-above-one", [*T, "--adv", "fgsm-mix", "--mix", "2"], "--mix must be in [0, 1]"),
    ("train-beta-nan", [*T, "--adv", "trades", "--beta", "nan"], "--beta must be a finite number"),
    ("train-flag-of-another-objective", [*T, "--beta", "1"], "--beta is a setting of --adv trades"),
    ("train-data-0-255", swap(T, "--data", "{data255}"), "float images must lie in [0, 1]"),
    ("train-data-nan", swap(T, "--data", "{datanan}"), "images contain NaN"),
    ("train-architecture-unknown", swap(T, "--model", "resnet9"), "is neither an architecture"),
    ("train-device-cuda", [*T, "--device", "cuda"], "no CUDA GPU is available"),
    ("train-abbreviated-resume", [*T, "--res"], "unrecognized arguments: --res"),
    ("alva-generate-n-zero", swap(G, "--n", "0"), "--n must be an integer >= 1"),
    ("alva-generate-chunk-size-zero", [*G, "--chunk-size", "0"], "--chunk-size must be an integer >= 1"),
    ("alva-generate-nan-classifier", [*G, "--classifier", "{models}:nan_model"], "gives NaN or infinite logits"),
    ("alva-generate-multilabel-classifier", [*G, "--classifier", "{multilabel}"], "is a multilabel model"),
    ("gan-train-critic-steps-zero", ["gan", "train", "--n-critic", "0", "--out", "{out}"], "--n-critic must be"),
    ("attack-label-steps-zero", ["attack-label", "--steps", "0", "--out", "{out}"], "--steps must be"),
    ("sparse-confidence-above-one", ["sparse", "--confidence", "2", "--out", "{out}"], "--confidence must be in"),
    ("sparse-target-not-a-class", ["sparse", "--target", "11", "--n-per-class", "1", "--out", "{out}"],
     "--target classes must be in [0, 9]"),
    ("transfer-queries-zero", ["transfer", "--queries", "0", "--out", "{out}"], "--queries must be an integer >= 1"),
    ("detect-fpr-above-one", ["detect", "--fpr", "2", "--out", "{out}"], "--fpr must be in [0, 1)"),
    ("fakeclass-rounds-zero", ["fakeclass", "--rounds", "0", "--out", "{out}"], "--rounds must be an integer >= 1"),
    ("fakeclass-threshold-nan", ["fakeclass", "--threshold", "nan", "--out", "{out}"], "--threshold must be a finite"),
    ("converge-lr-negative", ["converge", "--lr", "-1", "--out", "{out}"], "--lr must be in (0, inf)"),
    ("one-pixel-n-zero", ["one-pixel", "--n", "0", "--out", "{out}"], "--n must be an integer >= 1"),
    ("advgan-train-epochs-zero", ["advgan", "train", "--epochs", "0", "--out", "{out}"], "--epochs must be"),
    ("atgan-finetune-epochs-zero", ["atgan", "finetune", "--epochs", "0", "--out", "{out}"], "--epochs must be"),
    ("demo-epochs-zero", ["demo", "--epochs", "0", "--out", "{out}"], "--epochs must be an integer >= 1"),
    ("report-out-is-a-folder", ["report", "{root}", "--out", "{root}"], "is a folder; give the file to write"),
    ("report-no-run-folder", ["report", "{root}/nope"], "no run folder"),
    ("report-depth-negative", ["report", "{root}", "--depth", "-1"], "--depth must be an integer >= 0"),
    ("zoo-unknown-model", ["zoo", "mnist/nope"], "no model 'mnist/nope'"),
    ("data-info-missing-file", ["data", "info", "{root}/nope.npz"], "no such file"),
    ("data-export-out-is-a-file", ["data", "export", "{data}", "--out", "{file}"], "is a file, not a folder"),
]


def filled(argv: list[str], names: dict[str, str]) -> list[str]:
    return [a.format(**names) for a in argv]


@pytest.mark.parametrize("argv, message", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_a_command_refuses_bad_input_with_one_line_and_writes_nothing(world, tmp_path, monkeypatch, capsys,
                                                                      argv, message):
    monkeypatch.chdir(tmp_path)  # anything a command wrote by a relative path would land here
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


def test_debug_shows_the_traceback(world, tmp_path):
    with pytest.raises(ValueError, match="--batch-size must be an integer >= 1"):
        main([*filled(A, {**world, "out": str(tmp_path / "o")}), "--batch-size", "-1", "--debug"])
    assert not (tmp_path / "o").exists()


def test_the_table_covers_every_command():
    from alva.cli.main import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    tried = {c[1][0] for c in CLI_CASES}
    assert commands - tried == set()


@pytest.fixture(scope="module")
def batch(world) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = alva.data.load(world["data"], "test").tensors()
    return x[:8], y[:8]


def user_model(world, name: str) -> torch.nn.Module:
    return alva.models.load(f"{world['models']}:{name}")


def plain(scale: float = 1.0, shape: str = "rows") -> torch.nn.Module:
    """A model without a card (no known input shape), as a user builds one."""
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(784, 10)

        def forward(self, x):
            return self.lin(x.reshape(len(x), 784)) * scale
    return Plain()


def api_cases(cnn, world, x, y, out):
    """``(name, call, error type, message)`` of each mistake made through the Python API."""
    pgd = PGD(cnn, eps=0.3, steps=2, seed=0)
    train = TrainSettings(epochs=1, batch_size=4)

    def fit_on(images, labels=None, model=None):
        return lambda: fit(model or alva.models.create("softmax"), (images, y if labels is None else labels), train,
                           out=out, progress=False)

    return [
        ("images-3d", lambda: pgd(x[:, 0], y), AttackInputError, "shape (28, 28) but the model takes 1x28x28"),
        ("images-5d", lambda: pgd(x[:, None], y), AttackInputError, "but the model takes 1x28x28"),
        ("images-3-channels", lambda: pgd(x.repeat(1, 3, 1, 1), y), AttackInputError, "shape (3, 28, 28)"),
        ("images-float64", lambda: pgd(x.double(), y), AttackInputError, "x is torch.float64"),
        ("images-uint8", lambda: pgd((x * 255).to(torch.uint8), y), AttackInputError, "floating-point"),
        ("images-0-255", lambda: pgd(x * 255, y), AttackInputError, "outside the bounds [0.0, 1.0]"),
        ("images-nan", lambda: pgd(x.clone().fill_(float("nan")), y), AttackInputError, "NaN or infinite"),
        ("labels-length", lambda: pgd(x, y[:4]), AttackInputError, "batch sizes differ"),
        ("labels-out-of-range", lambda: pgd(x, y + 10), AttackInputError, "labels must be in [0, 9]"),
        ("labels-float", lambda: pgd(x, y.float()), AttackInputError, "integer labels"),
        ("target-is-the-label", lambda: pgd(x, y, target=y), AttackInputError, "target equals the true label"),
        ("target-wrong-length", lambda: pgd(x, y, target=y[:2]), AttackInputError, "target must be a tensor"),
        ("target-rule-unknown", lambda: PGD(cnn, target="nearest"), AttackInputError, "unknown target rule"),
        ("eps-nan", lambda: PGD(cnn, eps=float("nan")), AttackInputError, "eps must be >= 0 and finite"),
        ("steps-zero", lambda: PGD(cnn, steps=0), AttackInputError, "steps must be"),
        ("bounds-reversed", lambda: PGD(cnn, bounds=(1.0, 0.0)), AttackInputError, "low < high"),
        ("model-nan-logits", lambda: PGD(user_model(world, "nan_model"), steps=1)(x, y), ModelOutputError,
         "NaN or infinite logits for 8 of 8"),
        ("model-inf-logits", lambda: PGD(user_model(world, "inf_model"), steps=1)(x, y), ModelOutputError,
         "NaN or infinite logits"),
        ("model-flat-logits", lambda: PGD(_shaped(world, "flat"), steps=1)(x, y), ModelOutputError,
         "logits of shape (8,) for 8 inputs"),
        ("model-3d-logits", lambda: PGD(_shaped(world, "extra"), steps=1)(x, y), ModelOutputError,
         "logits of shape (8, 10, 1)"),
        ("model-tuple", lambda: PGD(_shaped(world, "pair"), steps=1)(x, y), ModelOutputError, "returns a tuple"),
        ("plain-model-wrong-shape", lambda: PGD(plain(), steps=1)(x[:, :, :20], y), ModelFailedError,
         "the model fails on x of shape (8, 1, 20, 28)"),
        ("evaluate-nan-model", lambda: evaluate_attack(PGD(user_model(world, "nan_model"), steps=1), x, y,
                                                       progress=False), ModelOutputError, "NaN or infinite logits"),
        ("strong-eval-nan-model", lambda: StrongEvaluation(plain(float("nan")), 0.3, version="quick", sanity=False,
                                                           progress=False, warn=False).run(x, y),
         ModelOutputError, "NaN or infinite logits"),
        ("fit-0-255", fit_on(x * 255), TrainingDataError, "outside the model's bounds [0, 1]"),
        ("fit-nan", fit_on(x.clone().fill_(float("nan"))), TrainingDataError, "8 of 8 images hold NaN"),
        ("fit-uint8", fit_on((x * 255).to(torch.uint8)), TrainingDataError, "floating-point"),
        ("fit-labels-beyond-outputs", fit_on(x, y + 10), TrainingDataError, "the model gives 10 outputs"),
        ("load-pickle", lambda: alva.models.load(world["pt"]), ModelLoadError, "pickle"),
        ("load-missing", lambda: alva.models.load("mnist/nope"), FileNotFoundError, "mnist/nope"),
        ("data-0-255", lambda: alva.data.load(world["data255"], "test"), DataError, "must lie in [0, 1]"),
    ]


def _shaped(world, name: str) -> torch.nn.Module:
    """The user's model whose logits have the wrong form, without the probe of ``alva.models.load``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bad_input_user_models", world["models"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)()


@pytest.fixture(scope="module")
def api_table(cnn_small, world, batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "run"
    return {c[0]: c for c in api_cases(cnn_small, world, *batch, out)}, out


API_CASE_NAMES = ["images-3d", "images-5d", "images-3-channels", "images-float64", "images-uint8", "images-0-255",
                  "images-nan", "labels-length", "labels-out-of-range", "labels-float", "target-is-the-label",
                  "target-wrong-length", "target-rule-unknown", "eps-nan", "steps-zero", "bounds-reversed",
                  "model-nan-logits", "model-inf-logits", "model-flat-logits", "model-3d-logits", "model-tuple",
                  "plain-model-wrong-shape", "evaluate-nan-model", "strong-eval-nan-model", "fit-0-255", "fit-nan",
                  "fit-uint8", "fit-labels-beyond-outputs", "load-pickle", "load-missing", "data-0-255"]


@pytest.mark.parametrize("name", API_CASE_NAMES)
def test_the_api_refuses_bad_input_with_its_error_and_writes_nothing(api_table, world, name):
    table, out = api_table
    _, call, error, message = table[name]
    before = snapshot(Path(world["root"]))
    with pytest.raises(error) as raised:
        call()
    assert message in str(raised.value)
    assert not out.exists() and snapshot(Path(world["root"])) == before


def test_every_api_case_is_in_the_table(api_table):
    assert sorted(api_table[0]) == sorted(API_CASE_NAMES)


def test_infinity_in_the_metrics_does_not_break_the_report(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"epoch": 1, "train": {"loss": Infinity}, "eval": {"clean_acc": NaN}}\n'
                                       '{"epoch": 2, "train": {"loss": -Infinity}, "eval": {"clean_acc": 0.5}}\n')
    assert main(["report", str(run), "--out", str(tmp_path / "report.html")]) == 0
    assert "inf" in (tmp_path / "report.html").read_text()
