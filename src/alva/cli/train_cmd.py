"""``alva train``: train a classifier on MNIST or multi-label MNIST, resumable, with metrics and a model card."""

from __future__ import annotations

import argparse

from alva.cli.common import add_common
from alva.models import ARCHITECTURES, zoo
from alva.training import OBJECTIVES, ClassifierRun, TrainSettings, train_classifier
from alva.training.classifier import DATASETS
from alva.training.loop import OPTIMIZERS, SCHEDULES


def register(commands) -> None:
    p = commands.add_parser("train", help="train a classifier on MNIST or multi-label MNIST",
                            description="Train a classifier; writes model.safetensors + model.json (card), "
                                        "checkpoint.safetensors, metrics.jsonl and TensorBoard logs to --out.")
    p.add_argument("--dataset", default="mnist", choices=sorted(DATASETS),
                   help="mnist (28 x 28, one class) or mnist-multilabel (56 x 56 grids of 1-4 digits, multi-hot)")
    p.add_argument("--model", default="cnn-small", choices=sorted(ARCHITECTURES))
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float, default=0.9, help="for sgd")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--schedule", default="constant", choices=SCHEDULES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adv", "--objective", dest="objective", default=None, choices=sorted(OBJECTIVES),
                   help="training objective: standard (cross-entropy, mnist), bce or asl (multi-label binary "
                        "cross-entropy or asymmetric loss, mnist-multilabel); default: the data set's "
                        "(standard, asl)")
    p.add_argument("--gamma-neg", type=float, default=None, help="asl: focusing exponent of negatives (default 4)")
    p.add_argument("--gamma-pos", type=float, default=None, help="asl: focusing exponent of positives (default 1)")
    p.add_argument("--clip", type=float, default=None, help="asl: probability margin of negatives (default 0.05)")
    p.add_argument("--train-size", type=int, default=None,
                   help="mnist: train on a fixed stratified subset of this size; mnist-multilabel: generate this "
                        "many training images (default 30000)")
    p.add_argument("--test-size", type=int, default=None,
                   help="mnist: evaluate on a fixed stratified test subset of this size (default all 10000); "
                        "mnist-multilabel: generate this many test images (default 5000)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    add_common(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
                             momentum=args.momentum, weight_decay=args.weight_decay, schedule=args.schedule,
                             seed=args.seed)
    asl = {k: v for k, v in (("gamma_neg", args.gamma_neg), ("gamma_pos", args.gamma_pos), ("clip", args.clip))
           if v is not None}
    objective = args.objective or DATASETS[args.dataset].objective
    if asl and objective != "asl":
        raise ValueError(f"--gamma-neg, --gamma-pos and --clip are settings of --adv asl, not of {objective}")
    job = ClassifierRun(model=args.model, out=args.out, settings=settings, objective=objective,
                        objective_settings=asl, train_size=args.train_size, test_size=args.test_size,
                        device=args.device, data_root=args.data_root, dataset=args.dataset)
    train_classifier(job, resume=args.resume, progress=not args.no_progress)
    info = zoo.card(args.out)
    if info["task"] == "multilabel":
        print(f"test mAP {info['clean_test_map']:.4f}, exact match {info['clean_test_accuracy']:.4f}, "
              f"macro F1 {info['clean_test_macro_f1']:.4f}; weights and card in {args.out}/model.safetensors")
    else:
        print(f"clean test accuracy {info['clean_test_accuracy']:.4f}; weights and card in "
              f"{args.out}/model.safetensors")
    return 0
