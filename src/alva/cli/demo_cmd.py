"""``alva demo``: the main job, every capability of alva in one run (results, pictures, report.html)."""

from __future__ import annotations

import argparse

from alva.cli.common import add_common, add_numbers, paragraph

DESCRIPTION = paragraph("""
Train cnn-small on MNIST and attack it with FGSM and PGD (eps curves, grids); reproduce the FGSM paper's linear
result; strong evaluation of the robust mnist/cnn-small-pgd; sparse confident images; a 3-pixel attack (differential
evolution); ALVA with the shipped generator and one round of convergence training; an AdvGAN generator attack; the
single-label attack on the multi-label model; a short adversarial training run. About 10 minutes on 2 CPU cores,
offline. Writes OUT/<part>/, OUT/summary.md and OUT/report.html. Finished parts are kept: rerun to go on after a
stop.
""")


def register(commands) -> None:
    p = commands.add_parser("demo", help="the main job: every capability in one run, with report.html",
                            description=DESCRIPTION)
    p.add_argument("--out", default="runs/demo")
    add_numbers(p, epochs=2)
    p.add_argument("--n", type=int, default=1000, help="test images to attack")
    add_numbers(p, seed=0)
    p.add_argument("--train-size", type=int, default=None, help="train on a fixed subset (default: all 60000)")
    p.add_argument("--quick", action="store_true",
                   help="tiny budgets for the parts after softmax-fgsm: a smoke test in seconds, not results")
    add_common(p, run, run_folder=True)


def run(args: argparse.Namespace) -> int:
    from alva.cli.run_folder import claim
    from alva.demo import run_demo

    claim(args, implicit_resume=True)  # a rerun goes on: finished parts are kept
    run_demo(args.out, epochs=args.epochs, n_eval=args.n, seed=args.seed, train_size=args.train_size,
             quick=args.quick, progress=not args.no_progress, data_root=args.data_root, device=args.device)
    return 0
