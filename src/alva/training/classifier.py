"""Train a classifier of :mod:`alva.models` on MNIST and write weights with a card: what ``alva train`` runs."""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import alva
from alva.data import fixed_subset, load_mnist
from alva.models import create, zoo
from alva.tracking.files import atomic_write_json
from alva.training.loop import TrainSettings, fit
from alva.training.objectives import Objective, get_objective


@dataclass
class ClassifierRun:
    """One ``alva train`` run: an architecture, training settings, and where to write it."""

    model: str = "cnn-small"
    out: str = "runs/train"
    settings: TrainSettings = field(default_factory=TrainSettings)
    objective: str = "standard"
    train_size: int | None = None  # a fixed stratified subset of the training split, for quick runs
    device: str = "cpu"
    data_root: str | None = None


def current_command() -> str:
    """The command line that started this process, as a user would retype it."""
    program = Path(sys.argv[0]).name
    program = "alva" if program in ("alva", "__main__.py", "main.py") else program
    return " ".join(shlex.quote(a) for a in [program, *sys.argv[1:]])


def train_classifier(run: ClassifierRun, *, resume: bool = False, progress: bool = True,
                     objective: Objective | None = None, command: str | None = None) -> nn.Module:
    """Train ``run.model`` on MNIST, evaluate on the test split after every epoch, and write
    ``out/model.safetensors`` with its card ``out/model.json`` (loadable by :func:`alva.models.load`)."""
    out = Path(run.out)
    out.mkdir(parents=True, exist_ok=True)
    x_train, y_train = load_mnist("train", run.data_root)
    if run.train_size is not None:
        x_train, y_train = fixed_subset(x_train, y_train, run.train_size, seed=run.settings.seed)
    test = load_mnist("test", run.data_root)
    objective = objective or get_objective(run.objective)

    torch.manual_seed(run.settings.seed)
    model = create(run.model)
    config = {"model": run.model, "objective": objective.describe(), "train_size": run.train_size,
              "settings": asdict(run.settings)}
    atomic_write_json(out / "config.json", config)
    command = command or current_command()
    data_sha256 = zoo.tensor_sha256(x_train, y_train)

    def write_model(epoch: int, record: dict[str, Any]) -> None:
        card = {
            **zoo.architecture_card(model),
            "command": command,
            "seed": run.settings.seed,
            "epochs": epoch,
            "objective": objective.describe(),
            "train_size": len(x_train),
            "data_sha256": data_sha256,
            "data_sha256_of": "float32 training images then int64 labels, as loaded by alva.data.load_mnist",
            "clean_test_accuracy": record["eval"]["clean_acc"],
            "alva_version": alva.__version__,
            "torch_version": torch.__version__,
        }
        zoo.save(model, card, out / "model.safetensors")

    fit(model, (x_train, y_train), run.settings, objective=objective, out=out, resume=resume, eval_data=test,
        device=run.device, progress=progress, on_epoch_end=write_model)
    return model.eval()
