"""Bad input given to the Python API: attacks, evaluations, ``fit``, model and data loading each refuse it with
their error type and a message naming the problem, and write nothing (tests/test_bad_input.py does the same for
the commands)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bad_input_world import make_world, snapshot, user_module

import alva.data
import alva.models
from alva.attacks import PGD, AttackInputError
from alva.attacks.errors import ModelFailedError, ModelOutputError
from alva.data import DataError
from alva.evaluation import evaluate_attack
from alva.evaluation.strong import StrongEvaluation
from alva.models import ModelLoadError
from alva.training import TrainSettings, fit
from alva.training.loop import TrainingDataError


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    return make_world(tmp_path_factory.mktemp("bad-input-api"))


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
    return getattr(user_module(world["models"]), name)()


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


