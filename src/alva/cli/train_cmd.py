"""``alva train``: train a classifier on MNIST, resumable, with metrics and a model card."""

from __future__ import annotations

import argparse

from alva.cli.common import add_common
from alva.models import ARCHITECTURES, zoo
from alva.training import OBJECTIVES, ClassifierRun, TrainSettings, train_classifier
from alva.training.loop import OPTIMIZERS, SCHEDULES


def register(commands) -> None:
    p = commands.add_parser("train", help="train a classifier on MNIST",
                            description="Train a classifier; writes model.safetensors + model.json (card), "
                                        "checkpoint.safetensors, metrics.jsonl and TensorBoard logs to --out.")
    p.add_argument("--model", default="cnn-small", choices=sorted(ARCHITECTURES))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", choices=SCHEDULES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adv", default="standard", choices=sorted(OBJECTIVES), help="training objective")
    p.add_argument("--train-size", type=int, default=None, help="train on a fixed stratified subset of this size")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    add_common(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                             momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                             seed=args.seed)
    job = ClassifierRun(model=args.model, out=args.out, settings=settings, objective=args.adv,
                        train_size=args.train_size, device=args.device, data_root=args.data_root)
    train_classifier(job, resume=args.resume, progress=not args.no_progress)
    accuracy = zoo.card(args.out)["clean_test_accuracy"]
    print(f"clean test accuracy {accuracy:.4f}; weights and card in {args.out}/model.safetensors")
    return 0
