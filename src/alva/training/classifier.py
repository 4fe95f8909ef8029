"""Train a classifier of :mod:`alva.models` on MNIST or multi-label MNIST and write weights with a card:
what ``alva train`` runs."""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import alva
from alva import distributed
from alva.data import fixed_subset, load_mnist, make_multilabel_mnist
from alva.models import create, zoo
from alva.tracking.files import atomic_write_json
from alva.training.loop import TrainSettings, fit
from alva.training.objectives import Objective
from alva.training.registry import get_objective


@dataclass(frozen=True)
class Dataset:
    """A data set ``alva train`` knows: its input shape, label kind, default objective and sizes."""

    in_shape: tuple[int, int, int]
    task: str  # "multiclass": int64 labels, argmax; "multilabel": N x 10 multi-hot, one sigmoid per label
    objective: str
    train_size: int | None  # None: the whole MNIST split
    test_size: int | None
    summary: str


DATASETS: dict[str, Dataset] = {
    "mnist": Dataset((1, 28, 28), "multiclass", "standard", None, None, "MNIST digits, 28 x 28, one class each"),
    "mnist-multilabel": Dataset((1, 56, 56), "multilabel", "asl", 30_000, 5_000,
                                "2 x 2 grids of 1-4 MNIST digits of distinct classes, 56 x 56, multi-hot labels "
                                "(alva.data.make_multilabel_mnist)"),
}


@dataclass
class ClassifierRun:
    """One ``alva train`` run: a data set, an architecture, training settings, and where to write it."""

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

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {sorted(DATASETS)}")
        for name in ("train_size", "test_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")


def load_data(run: ClassifierRun) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor],
                                            dict[str, Any]]:
    """The training and test data of ``run`` and a description of them for the card."""
    spec = DATASETS[run.dataset]
    if run.dataset == "mnist":
        train, test = load_mnist("train", run.data_root), load_mnist("test", run.data_root)
        if run.train_size is not None:
            train = fixed_subset(*train, run.train_size, seed=run.settings.seed)
        if run.test_size is not None:
            test = fixed_subset(*test, run.test_size, seed=0)
        return train, test, {"data_sha256_of": "float32 training images then int64 labels, as loaded by "
                                               "alva.data.load_mnist"}
    train_size, test_size = run.train_size or spec.train_size, run.test_size or spec.test_size
    if train_size is None or test_size is None:
        raise ValueError(f"dataset {run.dataset!r} needs train_size and test_size")
    train = make_multilabel_mnist("train", train_size, seed=run.data_seed, root=run.data_root)
    test = make_multilabel_mnist("test", test_size, seed=run.data_seed, root=run.data_root)
    made = "alva.data.make_multilabel_mnist('{}', {}, seed={})"
    return train, test, {
        "data_sha256_of": f"float32 training images then float32 multi-hot labels, as made by "
                          f"{made.format('train', train_size, run.data_seed)}",
        "test_data": made.format("test", test_size, run.data_seed),
    }


def current_command() -> str:
    """The command line that started this process, as a user would retype it."""
    program = Path(sys.argv[0]).name
    program = "alva" if program in ("alva", "__main__.py", "main.py") else program
    return " ".join(shlex.quote(a) for a in [program, *sys.argv[1:]])


def train_classifier(run: ClassifierRun, *, resume: bool = False, progress: bool = True,
                     objective: Objective | None = None, command: str | None = None) -> nn.Module:
    """Train ``run.model`` on ``run.dataset``, evaluate on the test data after every epoch, and write
    ``out/model.safetensors`` with its card ``out/model.json`` (loadable by :func:`alva.models.load`).

    For multi-label data the card's ``clean_test_accuracy`` is the exact-match accuracy (every label right
    at probability 0.5), beside ``clean_test_map``, ``clean_test_macro_f1`` and ``clean_test_hamming_accuracy``.
    """
    spec = DATASETS[run.dataset]
    objective = objective or get_objective(run.objective or spec.objective, **run.objective_settings)
    if objective.task != spec.task:
        raise ValueError(f"objective {objective.name!r} is for {objective.task} labels but dataset {run.dataset!r} "
                         f"has {spec.task} labels; use --dataset/--adv to match (e.g. asl or bce for "
                         "mnist-multilabel)")
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), test, data_card = load_data(run)

    torch.manual_seed(run.settings.seed)
    model = create(run.model, in_shape=spec.in_shape)
    config = {"model": run.model, "dataset": run.dataset, "objective": objective.describe(),
              "train_size": run.train_size, "test_size": run.test_size, "data_seed": run.data_seed,
              "settings": asdict(run.settings)}
    if distributed.is_main():
        atomic_write_json(out / "config.json", config, kind="train-config")
    command = command or current_command()
    data_sha256 = zoo.tensor_sha256(x_train, y_train)

    def write_model(epoch: int, record: dict[str, Any]) -> None:
        card = {
            **zoo.architecture_card(model),
            "task": spec.task,
            "dataset": run.dataset,
            "command": command,
            "seed": run.settings.seed,
            "epochs": epoch,
            "objective": objective.describe(),
            "train_size": len(x_train),
            "data_sha256": data_sha256,
            **data_card,
            "test_size": len(test[0]),
            **_test_figures(spec.task, record["eval"]),
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
