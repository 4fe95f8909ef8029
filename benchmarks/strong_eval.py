"""How long does the strong evaluation take, against plain PGD-100 on the same images?

Runs, on N (default 1000) fixed MNIST test images against the shipped ``mnist/cnn-small`` at L-inf eps 0.3:

1. the reference: ``alva.attacks.PGD`` with 100 steps (alpha = 2.5 eps / 100, random start, no early stop),
   the attack most papers report, timed over the same batches;
2. the strong evaluation (APGD-CE, APGD-T, Square, AutoAttack's standard budgets unless ``--version quick``),
   without a state folder and without the sanity checks, whose time is measured separately;
3. the sanity checks (on 200 images, as ``alva eval`` runs them).

The table gives each attack's robust accuracy after it (cumulative), its seconds and their ratio to the
seconds of PGD-100. On cnn-small at eps 0.3 APGD-CE breaks nearly every point within a few steps (it stops
on each point once broken), so APGD-T and Square have little or nothing left to attack; on a robust model
the later attacks dominate the time.

Usage: ``python benchmarks/strong_eval.py [--n 1000] [--eps 0.3] [--version standard] [--threads 1]
[--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from alva import models
from alva.attacks import PGD
from alva.data import fixed_subset, load_mnist
from alva.evaluation import run_attack
from alva.evaluation.sanity import run_sanity_checks
from alva.evaluation.strong import StrongEvaluation

MODEL = "mnist/cnn-small"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--version", default="standard", choices=["standard", "quick"])
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier when shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = models.load(MODEL)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=args.seed)

    pgd = PGD(model, eps=args.eps, steps=100, norm=args.norm, seed=args.seed)
    started = time.perf_counter()
    ref = run_attack(pgd, x, y, batch_size=args.batch_size, progress=False)
    pgd_seconds = time.perf_counter() - started
    pgd_acc = ((ref.clean_logits.argmax(1) == y) & ~ref.success).float().mean().item()

    evaluation = StrongEvaluation(model, args.eps, args.norm, version=args.version, seed=args.seed,
                                  batch_size=args.batch_size, progress=False, sanity=False)
    started = time.perf_counter()
    result = evaluation.run(x, y)
    strong_seconds = time.perf_counter() - started
    started = time.perf_counter()
    messages = run_sanity_checks(model, x, y, args.eps, args.norm, table=result.table, n_total=len(x), warn=False)
    sanity_seconds = time.perf_counter() - started

    rows = [(r["attack"], r["robust_acc"], r["seconds"]) for r in result.table]
    rows.append(("strong (all)", result.robust_acc, strong_seconds))
    rows.append(("sanity checks", float("nan"), sanity_seconds))
    rows.append(("PGD-100 (ref)", pgd_acc, pgd_seconds))
    print(f"{MODEL}, {args.norm} eps={args.eps}, {args.n} test images, version {args.version}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    print(f"{'attack':14s} {'robust acc':>10s} {'seconds':>8s} {'x PGD-100':>9s}")
    for name, acc, seconds in rows:
        acc_text = "" if acc != acc else f"{acc:.4f}"
        print(f"{name:14s} {acc_text:>10s} {seconds:8.2f} {seconds / pgd_seconds:9.2f}")
    for message in messages:
        print(f"WARNING: {message}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": MODEL, "settings": vars(args), "table": result.table, "strong_seconds": strong_seconds,
            "sanity_seconds": sanity_seconds, "sanity_warnings": messages,
            "reference": {"attack": "PGD-100", "robust_acc": pgd_acc, "seconds": pgd_seconds},
            "when": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
            "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
