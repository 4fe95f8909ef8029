"""How long does the strong evaluation take, against plain PGD-100 on the same images, and does it break at
least what the reference AutoAttack breaks?

Runs, on N (default 1000) fixed MNIST test images against a shipped model (default ``mnist/cnn-small``) at
L-inf eps 0.3:

1. the reference: ``alva.attacks.PGD`` with 100 steps (alpha = 2.5 eps / 100, random start, no early stop),
   the attack most papers report, timed over the same batches;
2. the strong evaluation (AutoAttack's standard version unless ``--version``), without a state folder and
   without the sanity checks, whose time is measured separately;
3. the sanity checks (on 200 images, as ``alva eval`` runs them).

The table gives each attack's robust accuracy after it (cumulative), its wall-clock and CPU seconds (the
process's, which other jobs on a shared machine do not inflate) and the ratio of its CPU seconds to
PGD-100's. On cnn-small at eps 0.3 APGD-CE breaks nearly every point within a few steps (it stops
on each point once broken), so the later attacks have little or nothing left to attack; on a robust model
they dominate the time.

``--compare autoattack`` instead runs the reference AutoAttack (``pyautoattack`` from the package registry, else
the ``autoattack`` package of Croce and Hein, when one can be imported; it is not a dependency of alva) in the
same version, member by member on the points
still robust, and alva's evaluation on the same images, and prints robust accuracy after each member for
both, the points broken by one and not the other, and the seconds.

Usage: ``python benchmarks/strong_eval.py [--model mnist/cnn-small] [--n 1000] [--eps 0.3] [--norm linf]
[--version standard] [--compare autoattack] [--threads 1] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from alva import models
from alva.attacks import PGD
from alva.data import fixed_subset, load_mnist
from alva.evaluation import run_attack
from alva.evaluation.sanity import run_sanity_checks
from alva.evaluation.strong import NORMS, VERSIONS, StrongEvaluation

AUTOATTACK_NORMS = {"linf": "Linf", "l2": "L2", "l1": "L1"}


def timed_strong_evaluation(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                            ) -> tuple[Any, dict[str, float], float, float]:
    """alva's strong evaluation without sanity checks: its result, the CPU seconds of each member, and the
    wall-clock and CPU seconds of the whole."""
    evaluation = StrongEvaluation(model, args.eps, args.norm, version=args.version, seed=args.seed,
                                  batch_size=args.batch_size, progress=False, sanity=False, warn=False)
    cpu: dict[str, float] = {}
    cpu_started = time.process_time()

    def count_cpu(event: str, info: dict[str, Any]) -> None:
        if event == "attack":
            cpu[info["attack"]] = time.process_time() - cpu_started - sum(cpu.values())

    started = time.perf_counter()
    result = evaluation.run(x, y, callback=count_cpu)
    return result, cpu, time.perf_counter() - started, time.process_time() - cpu_started


def timing(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The strong evaluation's table against PGD-100 and the sanity checks, with seconds."""
    pgd = PGD(model, eps=args.eps, steps=100, norm=args.norm, seed=args.seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    ref = run_attack(pgd, x, y, batch_size=args.batch_size, progress=False)
    pgd_seconds = time.perf_counter() - started
    pgd_acc = ((ref.clean_logits.argmax(1) == y) & ~ref.success).float().mean().item()

    pgd_cpu = time.process_time() - cpu_started

    result, cpu, strong_seconds, strong_cpu = timed_strong_evaluation(args, model, x, y)
    started, cpu_started = time.perf_counter(), time.process_time()
    messages = result.warnings + run_sanity_checks(model, x, y, args.eps, args.norm, table=result.table,
                                                   n_total=len(x), warn=False)
    sanity_seconds, sanity_cpu = time.perf_counter() - started, time.process_time() - cpu_started

    rows = [(r["attack"], r["robust_acc"], r["seconds"], cpu.get(r["attack"], float("nan"))) for r in result.table]
    rows.append(("strong (all)", result.robust_acc, strong_seconds, strong_cpu))
    rows.append(("sanity checks", float("nan"), sanity_seconds, sanity_cpu))
    rows.append(("PGD-100 (ref)", pgd_acc, pgd_seconds, pgd_cpu))
    print(f"{'attack':14s} {'robust acc':>10s} {'seconds':>8s} {'CPU s':>8s} {'x PGD-100 (CPU)':>15s}")
    for name, acc, seconds, spent in rows:
        acc_text = "" if acc != acc else f"{acc:.4f}"
        print(f"{name:14s} {acc_text:>10s} {seconds:8.2f} {spent:8.2f} {spent / pgd_cpu:15.2f}")
    for message in messages:
        print(f"WARNING: {message}")
    return {"table": result.table, "cpu_seconds": cpu, "strong_seconds": strong_seconds, "strong_cpu": strong_cpu,
            "sanity_seconds": sanity_seconds, "sanity_cpu": sanity_cpu, "sanity_warnings": messages,
            "reference": {"attack": "PGD-100", "robust_acc": pgd_acc, "seconds": pgd_seconds, "cpu": pgd_cpu}}


def autoattack_members(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor
                       ) -> tuple[list[dict[str, Any]], torch.Tensor]:
    """The reference AutoAttack, one member at a time on the points still robust: rows as alva's table and the
    per-sample robust flags at the end."""
    adversary, evaluate = reference_autoattack(args, model)
    started, cpu_started = time.perf_counter(), time.process_time()
    with torch.no_grad():
        robust = model(x).argmax(1) == y
    rows = [{"attack": "clean", "robust_acc": robust.float().mean().item(), "seconds": time.perf_counter() - started,
             "cpu": time.process_time() - cpu_started}]
    for name in list(adversary.attacks_to_run):
        started, cpu_started = time.perf_counter(), time.process_time()
        index = robust.nonzero().squeeze(1)
        if len(index):
            adversary.attacks_to_run = [name]
            x_adv = evaluate(x[index], y[index])
            with torch.no_grad():
                robust[index] = model(x_adv).argmax(1) == y[index]
        rows.append({"attack": name, "robust_acc": robust.float().mean().item(),
                     "seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu_started})
    return rows, robust


def reference_autoattack(args: argparse.Namespace, model: torch.nn.Module) -> tuple[Any, Any]:
    """The reference AutoAttack in ``args.version`` and a function running it on a set: the ``pyautoattack``
    package of the registry (keyword-only batch size, no ``verbose``, returns the points and their labels), else
    fra31's ``autoattack``."""
    norm = AUTOATTACK_NORMS[args.norm]
    try:
        from pyautoattack import AutoAttack  # the reference implementation, not a dependency of alva
    except ImportError:
        from autoattack import AutoAttack
        adversary = AutoAttack(model, norm=norm, eps=args.eps, version=args.version, seed=args.seed, verbose=False,
                               device="cpu")
        return adversary, lambda x, y: adversary.run_standard_evaluation(x, y, bs=args.batch_size)
    adversary = AutoAttack(model, norm=norm, eps=args.eps, version=args.version, seed=args.seed, device="cpu")
    adversary.verbose = False
    return adversary, lambda x, y: adversary.run_standard_evaluation(x, y, batch_size=args.batch_size)[0]


def compare(args: argparse.Namespace, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """alva's strong evaluation against the reference AutoAttack on the same images: per member the robust
    accuracy after it, wall-clock and CPU seconds; the totals and their ratio; the points only one breaks."""
    if args.version not in ("standard", "plus", "rand"):
        raise SystemExit(f"AutoAttack has no version {args.version!r}; compare standard, plus or rand")
    try:
        reference, reference_robust = autoattack_members(args, model, x, y)
    except ImportError as error:
        raise SystemExit(f"--compare autoattack needs the pyautoattack or autoattack package: {error}") from None
    result, cpu, seconds, spent = timed_strong_evaluation(args, model, x, y)
    ours = {row["attack"]: row for row in result.table}
    print(f"{'attack':10s} {'AutoAttack':>10s} {'s':>7s} {'CPU s':>7s} {'alva':>8s} {'s':>7s} {'CPU s':>7s}")
    for row in reference:
        mine = ours.get(row["attack"])
        text = ("-", "-", "-") if mine is None else (f"{mine['robust_acc']:.4f}", f"{mine['seconds']:.1f}",
                                                      f"{cpu.get(row['attack'], float('nan')):.1f}")
        print(f"{row['attack']:10s} {row['robust_acc']:10.4f} {row['seconds']:7.1f} {row['cpu']:7.1f} "
              f"{text[0]:>8s} {text[1]:>7s} {text[2]:>7s}")
    reference_seconds = sum(row["seconds"] for row in reference)
    reference_cpu = sum(row["cpu"] for row in reference)
    print(f"{'total':10s} {'':10s} {reference_seconds:7.1f} {reference_cpu:7.1f} {'':8s} {seconds:7.1f} "
          f"{spent:7.1f}   ratio alva / AutoAttack: {seconds / reference_seconds:.3f} wall-clock, "
          f"{spent / reference_cpu:.3f} CPU")
    robust = result.robust
    only_alva = (reference_robust & ~robust).nonzero().squeeze(1).tolist()
    only_reference = (~reference_robust & robust).nonzero().squeeze(1).tolist()
    print(f"robust accuracy: AutoAttack {reference_robust.float().mean().item():.4f}, alva {result.robust_acc:.4f}; "
          f"broken only by alva: {len(only_alva)}, only by AutoAttack: {len(only_reference)}")
    for message in result.warnings:
        print(f"WARNING (alva): {message}")
    return {"autoattack": reference, "alva": result.table, "alva_cpu_seconds": cpu,
            "autoattack_seconds": reference_seconds, "autoattack_cpu": reference_cpu, "alva_seconds": seconds,
            "alva_cpu": spent, "ratio_seconds": seconds / reference_seconds, "ratio_cpu": spent / reference_cpu,
            "autoattack_robust_acc": reference_robust.float().mean().item(), "alva_robust_acc": result.robust_acc,
            "broken_only_by_alva": len(only_alva), "broken_only_by_autoattack": len(only_reference),
            "points_broken_only_by_alva": only_alva, "points_broken_only_by_autoattack": only_reference,
            "warnings": result.warnings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist/cnn-small")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--norm", default="linf", choices=list(NORMS))
    parser.add_argument("--version", default="standard", choices=sorted(VERSIONS))
    parser.add_argument("--compare", default=None, choices=["autoattack"],
                        help="run the reference AutoAttack too, on the same images")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier when shared)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = models.load(args.model)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=args.seed)
    print(f"{args.model}, {args.norm} eps={args.eps}, {args.n} test images, version {args.version}, "
          f"{args.threads} thread(s), torch {torch.__version__}")
    figures = compare(args, model, x, y) if args.compare else timing(args, model, x, y)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "settings": vars(args), **figures,
            "when": datetime.datetime.now().isoformat(timespec="seconds"), "machine": platform.platform(),
            "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
