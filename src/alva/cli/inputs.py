"""What every command reads, named the same way everywhere: ``--data`` and ``--split`` (any source of
:func:`alva.data.load`), ``--model`` and its options (any spec of :func:`alva.models.load`), budgets written as
fractions (``--eps 8/255``), and the output folder, created only once every input has loaded and fits."""

from __future__ import annotations

import argparse
import json

import torch
from torch import nn

import alva.data
from alva.attacks.errors import checked_logits
from alva.cli.common import add_once
from alva.data import ImageData
from alva.models import check_fits, load
from alva.models.factory import ModelLoadError
from alva.units import parse_floats, parse_fraction

MNIST_EPS = 0.3
RGB_EPS = 8 / 255
EPS_HELP = "default: 0.3 for 1-channel data such as MNIST, 8/255 for RGB data"
DATA_HELP = ("the data: mnist, mnist-multilabel, cifar10:DIR, cifar100:DIR (the binary version), FILE.npz or "
             "FILE.safetensors (arrays x, y; {split} in the name picks a file per split, e.g. data-{split}.npz), or "
             "an image folder (one subfolder per class, or train/ and test/ folders of that layout)")
MODEL_HELP = ("zoo name, weights file with its card, run folder of alva train, FILE.py:FUNCTION or "
              "package.module:FUNCTION (imports and runs that code)")


def fraction(text: str) -> float:
    """argparse type of a budget: ``"8/255"`` or ``"0.3"``; NaN, infinity, negatives and garbage are refused."""
    try:
        return parse_fraction(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def fractions(text: str) -> list[float]:
    """argparse type of comma-separated budgets or weights: ``0.05,8/255``."""
    return [fraction(v.strip()) for v in text.split(",") if v.strip()]


def image_size(text: str) -> tuple[int, int]:
    """argparse type of ``--resize``: ``HxW`` (``224x224``) or one number for square images."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected a size HxW such as 224x224, got {text!r}")
    return sizes[0], sizes[1]


def add_data_options(parser: argparse.ArgumentParser, *, default: str = "mnist", split: str = "test",
                     splits: bool = False) -> None:
    """``--data``, ``--resize``, ``--data-root`` and ``--split`` (or, with ``splits``, ``--train-split`` and
    ``--test-split`` for commands that train and test)."""
    parser.add_argument("--data", default=default, metavar="SPEC", help=DATA_HELP)
    if splits:
        parser.add_argument("--train-split", default="train", help="the split to train on")
        parser.add_argument("--test-split", default="test", help="the split to test on")
    else:
        parser.add_argument("--split", default=split, help="the split of --data to read (train or test)")
    parser.add_argument("--resize", type=image_size, default=None, metavar="HxW",
                        help="resize every image to HxW (bilinear), e.g. for an image folder of mixed sizes")
    add_once(parser, "--data-root", default=None,
             help="folder with the MNIST IDX files (default: $ALVA_MNIST_ROOT, else data/mnist)")


def _model_flags(name: str) -> dict[str, str]:
    """The flags of the model option ``name`` and its extra options: ``--weights`` ... for ``--model``,
    ``--source-weights`` ... for ``--source``; ``--model-kwargs`` or ``--source-kwargs``."""
    base = name.lstrip("-")
    prefix = "" if base == "model" else base + "-"
    flags = {"spec": name, "kwargs": f"--{base}-kwargs"}
    flags.update({key: f"--{prefix}{key}" for key in ("weights", "mean", "std", "bounds")})
    return flags


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_model_options(parser: argparse.ArgumentParser, *, default: str | None = "mnist/cnn-small",
                      name: str = "--model", extra: bool = True) -> None:
    """``name`` (a model spec) and, with ``extra``, the options of a FILE.py:FUNCTION model: ``--weights``,
    ``--mean``, ``--std``, ``--bounds``, ``--model-kwargs`` (prefixed with the option's name for another
    ``name``, e.g. ``--source-weights``) and the shared ``--trust-code``."""
    flags = _model_flags(name)
    parser.add_argument(name, default=default, metavar="SPEC", help=MODEL_HELP)
    if not extra:
        return
    only = f"FILE.py:FUNCTION {name} only"
    parser.add_argument(flags["weights"], default=None, metavar="W.safetensors",
                        help=f"{only}: a plain state dict of the function's module")
    parser.add_argument(flags["mean"], default=None, metavar="M1,M2,M3",
                        help=f"{only}: per-channel mean the inputs are standardised with")
    parser.add_argument(flags["std"], default=None, metavar="S1,S2,S3",
                        help=f"{only}: per-channel standard deviation, given with the mean")
    parser.add_argument(flags["bounds"], default=None, metavar="LO,HI",
                        help=f"{only}: range of the inputs (default 0,1; negative: {flags['bounds']}=-1,1)")
    parser.add_argument(flags["kwargs"], default=None, metavar="JSON",
                        help=f"{only}: keyword arguments of the function, as a JSON object")
    add_once(parser, "--trust-code", action="store_true",
             help="load a card (run folder or weights file) that names a FILE.py:FUNCTION factory: this imports "
                  "and runs that code, so give it only for code you trust")


def load_data(args: argparse.Namespace, split: str | None = None) -> ImageData:
    """The data of ``args.data`` for ``split`` (default ``args.split``)."""
    chosen = split if split is not None else args.split
    return alva.data.load(args.data, chosen, resize=getattr(args, "resize", None),
                          root=getattr(args, "data_root", None))


def _floats(text: str | None, option: str, *, count: int | None = None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return parse_floats(text, count=count, negative=option.endswith("bounds"))
    except ValueError as err:
        raise ValueError(f"{option}: {err}") from None


def json_object(text: str | None, option: str) -> dict | None:
    """The JSON object ``text`` given to ``option`` (None when not given); a ValueError naming the option
    otherwise."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{option} must be a JSON object such as '{{\"width\": 16}}': {err}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object such as '{{\"width\": 16}}', got {text!r}")
    return value


def model_options(args: argparse.Namespace, *, name: str = "--model") -> dict:
    """The keyword arguments of :func:`alva.models.load` that the extra options of ``name`` give."""
    flags = _model_flags(name)
    given = {key: getattr(args, _dest(flag), None) for key, flag in flags.items()}
    options = {
        "weights": given["weights"],
        "mean": _floats(given["mean"], flags["mean"]),
        "std": _floats(given["std"], flags["std"]),
        "bounds": _floats(given["bounds"], flags["bounds"], count=2),
        "kwargs": json_object(given["kwargs"], flags["kwargs"]),
    }
    return {k: v for k, v in options.items() if v is not None}


def load_model(args: argparse.Namespace, data: ImageData, *, name: str = "--model") -> nn.Module:
    """The model of option ``name`` (with its extra options), on ``args.device``, checked to fit ``data``
    (channels, size, classes); a ValueError with a one-line message otherwise."""
    spec = getattr(args, _dest(name))
    try:
        model = load(spec, **model_options(args, name=name), in_shape=data.shape,
                     device=getattr(args, "device", "cpu"), trust_code=getattr(args, "trust_code", False),
                     verify=not getattr(args, "skip_weights_check", False))
    except ModelLoadError as err:
        raise ModelLoadError(f"{name} {spec}: {err}" if spec not in str(err) else str(err)) from err
    data_name = f"the data {data.source!r} ({data.split})"
    check_fits(model, data.shape, data.num_classes, model_name=str(spec), data_name=data_name)
    check_task(model, getattr(data, "task", "multiclass"), str(spec), data_name)
    images = first_images(data)
    if images is not None:
        check_outputs(model, images, str(spec))
    return model


def first_images(data: object, count: int = 8) -> torch.Tensor | None:
    """The first ``count`` images of ``data`` (a data set, or the samples of a generator), None if it has none."""
    if isinstance(data, ImageData):
        return data.subset(range(min(count, len(data)))).tensors()[0] if len(data) else None
    return getattr(data, "samples", None)


def check_task(model: nn.Module, task: str, spec: str, data_name: str) -> None:
    """Refuse a model whose card names another task (multi-label, multi-class) than the labels of the data."""
    card_task = getattr(model, "card", {}).get("task")
    if card_task and card_task != task:
        raise ModelLoadError(f"model {spec!r} is a {card_task} model (its card says so) but {data_name} has "
                             f"{task} labels; give a {task} model")


def check_outputs(model: nn.Module, images: torch.Tensor, spec: str) -> None:
    """Refuse a model that does not give one finite row of logits for each of ``images``: every figure computed
    from its outputs would be meaningless."""
    device = next(iter(model.state_dict().values()), torch.zeros(0)).device
    with torch.no_grad():
        checked_logits(model(images.to(device)), len(images), f"model {spec!r}, on the first images,")


def load_splits(args: argparse.Namespace, *, name: str = "--model") -> tuple[ImageData, ImageData, nn.Module]:
    """The test and train splits of ``args.data`` and the model of option ``name``, checked to fit both."""
    test = load_data(args, args.test_split)
    model = load_model(args, test, name=name)
    train = load_data(args, args.train_split)
    check_fits(model, train.shape, train.num_classes, model_name=str(getattr(args, _dest(name))),
               data_name=f"the data {args.data!r} ({args.train_split})")
    return test, train, model


def default_eps(data: ImageData) -> float:
    """The usual L-inf budget of ``data``: 0.3 for 1-channel data (MNIST), 8/255 for 3-channel data."""
    return MNIST_EPS if data.shape[0] == 1 else RGB_EPS


def subset(data: ImageData, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed stratified subset of ``n`` samples of ``data`` for ``seed``, in memory (all for ``None``, or
    when ``n`` is at least the size of the data)."""
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    return data.tensors(None if n is None or n >= len(data) else n, seed=seed)


def samples(data: ImageData, n: int | None, seed: int) -> tuple[torch.Tensor | ImageData, torch.Tensor | None]:
    """What a command attacks: the fixed subset of :func:`subset` as tensors ``(x, y)`` when ``data`` is in
    memory, else that subset as a streamed :class:`~alva.data.ImageData` (and None), read batch by batch."""
    if data.in_memory:
        return subset(data, n, seed)
    if n is not None and n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    return (data if n is None or n >= len(data) else data.subset(data.subset_indices(n, seed=seed))), None


__all__ = ["DATA_HELP", "EPS_HELP", "MODEL_HELP", "MNIST_EPS", "RGB_EPS", "add_data_options", "add_model_options",
           "check_outputs", "check_task", "default_eps", "first_images", "fraction", "fractions", "image_size",
           "json_object", "load_data", "load_model", "load_splits", "model_options", "samples", "subset"]
