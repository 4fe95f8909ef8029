"""Train a classifier (an architecture of :mod:`alva.models` or the user's ``FILE.py:FUNCTION``) on any data set
of :func:`alva.data.load` and write weights with a card: what ``alva train`` runs."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import alva
import alva.data
from alva import distributed
from alva.data import DataError, ImageData
from alva.data.registry import find_source
from alva.models import build, zoo
from alva.models.loading import probe
from alva.tracking.files import atomic_write_json
from alva.training.loop import TrainSettings, fit
from alva.training.objectives import Objective
from alva.training.registry import get_objective

# The data sets with their own default objective in ``alva train``; any other data set of :func:`alva.data.load`
# trains with ``standard`` or ``asl`` by its labels.
DATASETS: dict[str, str] = {"mnist": "standard", "mnist-multilabel": "asl"}


# objectives that attack during training: a budget they are not given is 8/255 on RGB data (their own default,
# 0.3 or 0.25, is for MNIST)
ADVERSARIAL = ("fgsm-mix", "pgd", "fast", "n-fgsm", "grad-align", "trades")
RGB_EPS = 8 / 255


@dataclass
class ClassifierRun:
    """One ``alva train`` run: a data set (any spec of :func:`alva.data.load`), a model (an architecture name or
    ``FILE.py:FUNCTION``, built by :func:`alva.models.build` with ``model_options``), training settings, and
    where to write it."""

    model: str = "cnn-small"
    out: str = "runs/train"
    settings: TrainSettings = field(default_factory=TrainSettings)
    objective: str | None = None  # None: the data set's default ("standard" for mnist, "asl" for mnist-multilabel)
    objective_settings: dict[str, Any] = field(default_factory=dict)  # e.g. {"gamma_neg": 4} for asl
    train_size: int | None = None  # mnist: a fixed stratified subset of the training split; generated sets: their size
    device: str = "cpu"
    data_root: str | None = None
    dataset: str = "mnist"
    test_size: int | None = None  # mnist: a fixed stratified subset of the test split; generated sets: their size
    data_seed: int = 0  # seed of the generated sets (mnist-multilabel); the test set always uses it too
    train_split: str = "train"
    test_split: str = "test"
    resize: tuple[int, int] | None = None
    model_options: dict[str, Any] = field(default_factory=dict)  # mean, std, bounds, kwargs of alva.models.build

    def __post_init__(self) -> None:
        try:
            find_source(self.dataset)
        except DataError as err:
            raise ValueError(f"unknown dataset {self.dataset!r}: {err}") from None
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


def load_data(run: ClassifierRun) -> tuple[ImageData, tuple[torch.Tensor, torch.Tensor],
                                            tuple[torch.Tensor, torch.Tensor], dict[str, Any]]:
    """The training data set of ``run``, its training and test tensors, and a description of them for the card."""
    generated = run.dataset == "mnist-multilabel"  # its sizes are the counts to generate (None: the default)
    counts = (run.train_size, run.test_size) if generated else (None, None)
    train_set, test_set = (alva.data.load(run.dataset, split, resize=run.resize, root=run.data_root,
                                          data_seed=run.data_seed, count=count)
                           for split, count in zip((run.train_split, run.test_split), counts, strict=True))
    if generated:
        train, test = train_set.tensors(), test_set.tensors()
        made = "alva.data.make_multilabel_mnist('{}', {}, seed={})"
        return train_set, train, test, {
            "data_sha256_of": f"float32 training images then float32 multi-hot labels, as made by "
                              f"{made.format('train', len(train[0]), run.data_seed)}",
            "test_data": made.format("test", len(test[0]), run.data_seed),
        }
    train = train_set.tensors(run.train_size, seed=run.settings.seed)
    test = test_set.tensors(run.test_size, seed=0)
    if run.dataset == "mnist" and run.resize is None:
        return train_set, train, test, {"data_sha256_of": "float32 training images then int64 labels, as loaded by "
                                                          "alva.data.load_mnist"}
    return train_set, train, test, {
        "data_sha256_of": f"float32 training images then labels, as read by alva.data.load({run.dataset!r}, "
                          f"{run.train_split!r})",
        "class_names": list(train_set.class_names),
        "test_data": f"alva.data.load({run.dataset!r}, {run.test_split!r})",
    }


def objective_for(run: ClassifierRun, data: ImageData) -> Objective:
    """The objective of ``run`` (the data's default when not named), with 8/255 as the budget of an adversarial
    objective on RGB data when none is given."""
    name = run.objective or DATASETS.get(run.dataset) or ("standard" if data.task == "multiclass" else "asl")
    settings = dict(run.objective_settings)
    if name in ADVERSARIAL and data.shape[0] != 1:
        settings.setdefault("eps", RGB_EPS)
    return get_objective(name, **settings)


def current_command() -> str:
    """The command line that started this process, as a user would retype it."""
    program = Path(sys.argv[0]).name
    program = "alva" if program in ("alva", "__main__.py", "main.py") else program
    return " ".join(shlex.quote(a) for a in [program, *sys.argv[1:]])


def train_classifier(run: ClassifierRun, *, resume: bool = False, progress: bool = True,
                     objective: Objective | None = None, command: str | None = None,
                     claim: Callable[[dict[str, Any]], Any] | None = None) -> nn.Module:
    """Train ``run.model`` on ``run.dataset``, evaluate on the test data after every epoch, and write
    ``out/model.safetensors`` with its card ``out/model.json`` (loadable by :func:`alva.models.load`; a card of a
    ``FILE.py:FUNCTION`` model records that factory, and loads with ``trust_code=True``).

    The data and the model are loaded and checked to fit before ``run.out`` is created: by ``claim`` when given
    (called with the training and test data, ``{"training data": (x, y), "test data": (x, y)}``, it checks and
    makes the run folder, as ``alva train`` does).

    For multi-label data the card's ``clean_test_accuracy`` is the exact-match accuracy (every label right
    at probability 0.5), beside ``clean_test_map``, ``clean_test_macro_f1`` and ``clean_test_hamming_accuracy``.
    """
    data, (x_train, y_train), test, data_card = load_data(run)
    objective = objective or objective_for(run, data)
    if objective.task != data.task:
        raise ValueError(f"objective {objective.name!r} is for {objective.task} labels but the data {run.dataset!r} "
                         f"has {data.task} labels; use --data/--adv to match (e.g. asl or bce for multi-hot labels)")
    torch.manual_seed(run.settings.seed)
    model = build(run.model, in_shape=data.shape, num_classes=data.num_classes, **run.model_options)
    probe(model, data.shape, str(run.model))  # a model that cannot take the images fails here, before run.out exists
    out = Path(run.out)
    if claim is not None:
        claim({"training data": (x_train, y_train), "test data": test})
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "model": run.model, "dataset": run.dataset, "objective": objective.describe(), "train_size": run.train_size,
        "test_size": run.test_size, "data_seed": run.data_seed, "settings": asdict(run.settings)}
    if run.model_options:
        config["model_options"] = run.model_options
    if run.resize:
        config["resize"] = list(run.resize)
    if (run.train_split, run.test_split) != ("train", "test"):
        config.update(train_split=run.train_split, test_split=run.test_split)
    if distributed.is_main():
        atomic_write_json(out / "config.json", config, kind="train-config")
    command = command or current_command()
    data_sha256 = zoo.tensor_sha256(x_train, y_train)

    def write_model(epoch: int, record: dict[str, Any]) -> None:
        card = {
            **zoo.architecture_card(model),
            "task": data.task,
            "dataset": run.dataset,
            "command": command,
            "seed": run.settings.seed,
            "epochs": epoch,
            "objective": objective.describe(),
            "train_size": len(x_train),
            "data_sha256": data_sha256,
            **data_card,
            "test_size": len(test[0]),
            **_test_figures(data.task, record["eval"]),
            "train_time_s": round(_train_time(out, epoch), 1),
            "alva_version": alva.__version__,
            "torch_version": torch.__version__,
        }
        zoo.save(model, card, out / "model.safetensors")

    fit(model, (x_train, y_train), run.settings, objective=objective, out=out, resume=resume, eval_data=test,
        device=run.device, progress=progress, on_epoch_end=write_model)
    return model.eval()


def _train_time(out: Path, epoch: int) -> float:
    """Seconds spent on epochs 1..``epoch`` of the run in ``out``, over all its resumed parts."""
    from alva.tracking.logger import read_metrics

    return sum(r.get("time_s", 0.0) for r in read_metrics(out / "metrics.jsonl") if r.get("epoch", 0) <= epoch)


def _test_figures(task: str, evaluation: dict[str, float]) -> dict[str, float]:
    """The card's test figures from an epoch's evaluation record (adversarial validation as ``pgdN_test_accuracy``
    on the objective's first ``eval_size`` test images)."""
    if task == "multiclass":
        robust = {f"{k[:-4]}_test_accuracy": v for k, v in evaluation.items() if k.startswith("pgd")}
        return {"clean_test_accuracy": evaluation["clean_acc"], **robust}
    return {
        "decision_threshold": 0.5,
        "clean_test_accuracy": evaluation["exact_match"],
        "clean_test_map": evaluation["map"],
        "clean_test_macro_f1": evaluation["macro_f1"],
        "clean_test_hamming_accuracy": evaluation["hamming_acc"],
    }
