"""The shared options of the commands: --data, --model and its options, fractions, and whole option names."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from alva.cli import inputs
from alva.cli.common import add_common
from alva.cli.main import Parser, build_parser, main
from alva.data import load_mnist
from alva.models import ModelLoadError

USER_MODELS = Path(__file__).resolve().parents[1] / "models" / "user_models.py"


def _parser(**model) -> argparse.ArgumentParser:
    parser = Parser(prog="t")
    inputs.add_data_options(parser)
    inputs.add_model_options(parser, **model)
    add_common(parser)
    parser.add_argument("--resume", action="store_true")
    return parser


@pytest.mark.parametrize("text, value", [("8/255", 8 / 255), ("0.3", 0.3), (" 1 / 4 ", 0.25), ("0", 0.0)])
def test_fraction_reads_numbers_and_fractions(text, value):
    assert inputs.fraction(text) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("text", ["nan", "inf", "-0.1", "8/0", "eight", "", "1/2/3"])
def test_fraction_refuses_what_is_not_a_budget(text):
    with pytest.raises(argparse.ArgumentTypeError):
        inputs.fraction(text)


def test_option_names_are_never_abbreviated(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--res"])
    assert "unrecognized arguments: --res" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # sub-parsers too: --data x.npz was once taken for --data-root
        build_parser().parse_args(["train", "--res", "--out", "o"])
    assert "--res" in capsys.readouterr().err
    assert _parser().parse_args(["--resume"]).resume


def test_data_options_and_the_data_root_are_offered_once():
    args = _parser().parse_args(["--data", "x.npz", "--split", "train", "--resize", "32x24", "--data-root", "d"])
    assert (args.data, args.split, args.resize, args.data_root) == ("x.npz", "train", (32, 24), "d")
    defaults = _parser().parse_args([])
    assert (defaults.data, defaults.split, defaults.resize, defaults.model) == ("mnist", "test", None,
                                                                                "mnist/cnn-small")
    parser = Parser(prog="t")
    inputs.add_data_options(parser, splits=True)
    args = parser.parse_args(["--train-split", "test"])
    assert (args.train_split, args.test_split) == ("test", "test")


def test_a_second_model_option_has_prefixed_extra_options():
    parser = _parser()
    inputs.add_model_options(parser, name="--source", default=None)
    args = parser.parse_args(["--source", "f.py:build", "--source-mean", "0.5,0.5,0.5", "--source-std", "1/4,1/4,1/4",
                              "--source-kwargs", '{"width": 4}', "--bounds=-1,1", "--trust-code"])
    assert inputs.model_options(args, name="--source") == {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                                                            "kwargs": {"width": 4}}
    assert inputs.model_options(args) == {"bounds": (-1.0, 1.0)}
    assert args.trust_code


@pytest.mark.parametrize("option, value, message", [
    ("--mean", "0.5,x", "--mean"), ("--bounds", "0", "--bounds"), ("--model-kwargs", "[1]", "JSON object"),
    ("--model-kwargs", "{", "JSON object"),
])
def test_bad_model_options_are_one_line_errors(option, value, message):
    args = _parser().parse_args([option, value])
    with pytest.raises(ValueError, match=message):
        inputs.model_options(args)


def test_load_data_and_model_check_the_fit():
    args = _parser().parse_args(["--model", "mnist/softmax"])
    data = inputs.load_data(args)
    assert data.shape == (1, 28, 28) and data.split == "test"
    model = inputs.load_model(args, data)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    x, y = inputs.subset(data, 100, seed=3)
    from alva.data import fixed_subset
    ex, ey = fixed_subset(*load_mnist("test"), 100, seed=3)
    assert torch.equal(x, ex) and torch.equal(y, ey)
    assert inputs.default_eps(data) == 0.3


def test_a_model_that_does_not_fit_the_data_is_refused(tmp_path):
    x = (np.random.default_rng(0).random((12, 3, 32, 32)) * 255).astype(np.uint8)
    np.savez(tmp_path / "rgb.npz", x=x, y=np.arange(12) % 3)
    args = _parser().parse_args(["--data", str(tmp_path / "rgb.npz"), "--model", "mnist/softmax"])
    data = inputs.load_data(args)
    assert inputs.default_eps(data) == pytest.approx(8 / 255)
    with pytest.raises(ModelLoadError, match="3x32x32"):
        inputs.load_model(args, data)
    user = _parser().parse_args(["--data", str(tmp_path / "rgb.npz"), "--model", f"{USER_MODELS}:build"])
    with pytest.raises(ModelLoadError, match="10 outputs but .* 3 classes"):
        inputs.load_model(user, data)
    user.model_kwargs = '{"num_classes": 3, "width": 4}'
    assert inputs.load_model(user, data)(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_a_budget_that_is_no_number_stops_the_command_before_any_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--eps", "nan", "--out", str(tmp_path / "o")])
    assert "finite" in capsys.readouterr().err and not (tmp_path / "o").exists()
