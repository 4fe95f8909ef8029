"""``alva demo``: the main job (train a small MNIST classifier, attack it with FGSM and PGD, write results)."""

from __future__ import annotations

import argparse

from alva.cli.common import add_common


def register(commands) -> None:
    p = commands.add_parser("demo", help="the main job: train, attack with FGSM and PGD, write results",
                            description="Train cnn-small on MNIST, attack it with FGSM and PGD (eps curves, "
                                        "grids), reproduce the FGSM paper's linear result. Finished parts are "
                                        "kept: rerun to go on after a stop.")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--n", type=int, default=1000, help="test images to attack")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-size", type=int, default=None, help="train on a fixed subset (default: all 60000)")
    add_common(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from alva.demo import run_demo

    run_demo(args.out, epochs=args.epochs, n_eval=args.n, seed=args.seed, train_size=args.train_size,
             progress=not args.no_progress, data_root=args.data_root, device=args.device)
    return 0
