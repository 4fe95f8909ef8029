"""The L1 and L0 threat models side by side: robust accuracy under L1 (PGD-L1, l1-APGD, l1-APGD-T) and the
success of the L0 attacks (Sparse-RS, JSMA, k-pixel differential evolution) on the same MNIST test images.

    python benchmarks/sparse_threat_models.py [--models mnist/cnn-small,mnist/cnn-small-pgd] [--n 1000]
        [--eps 5,10] [--steps 100] [--k 10,20] [--queries 1000,3000] [--threads 1] [--skip de,jsma]

Images: the fixed stratified subset of ``--n`` test images (seed 0). Every attack is seeded (seed 0) and
untargeted except JSMA, which is targeted by nature (a random other class per image; success = the target).
L1 rows give robust accuracy (the share of images still classified correctly); L0 rows give the success rate
(on all images, the clean-misclassified ones included), the median number of changed pixels of the successful
images that were changed and the mean queries per image. ``DE`` is
:class:`~alva.attacks.differential_evolution.DifferentialEvolution` with ``pixels=k``, ``popsize=100`` and
``max_queries`` the Sparse-RS budget.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from alva.attacks import APGD, JSMA, PGD, APGDTargeted, AttackResult, DifferentialEvolution, SparseRS
from alva.attacks.sparse_rs import changed_pixels
from alva.data import fixed_subset, load_mnist
from alva.models import load


def _l1_row(name: str, eps: float, result: AttackResult, x: torch.Tensor, seconds: float) -> str:
    l1 = (result.x_adv - x).abs().flatten(1).sum(dim=1).max().item()
    return (f"| {name} | L1 eps={eps:g} | robust acc {1 - result.success_rate:.3f} | max L1 {l1:.3f} | "
            f"{result.queries.float().mean():.0f} | {seconds:.0f} |")


def _l0_row(name: str, budget: str, result: AttackResult, x: torch.Tensor, seconds: float) -> str:
    changed = changed_pixels(x, result.x_adv)
    l0 = changed[result.success & (changed > 0)].float()  # the images the attack had to change
    median = f"{l0.median().item():.0f}" if len(l0) else "-"
    return (f"| {name} | L0 {budget} | success {result.success_rate:.3f} | median L0 {median} | "
            f"{result.queries.float().mean():.0f} | {seconds:.0f} |")


def _timed(attack: Callable[[torch.Tensor, torch.Tensor], AttackResult], x, y) -> tuple[AttackResult, float]:
    begin = time.perf_counter()
    result = attack(x, y)
    return result, time.perf_counter() - begin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", default="5,10")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--k", default="10,20")
    parser.add_argument("--queries", default="1000,3000")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip", default="", help="comma-separated: l1, sparse-rs, jsma, de")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = set(filter(None, args.skip.split(",")))
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=0)
    print(f"{args.n} MNIST test images, {args.threads} thread(s), seed 0")
    print("| model / attack | threat model | figure | | mean queries | seconds |")
    print("|---|---|---|---|---:|---:|")
    for name in args.models.split(","):
        model = load(name)
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean().item()
        print(f"| {name} | clean | accuracy {clean:.3f} | | | |", flush=True)
        if "l1" not in skip:
            for eps in (float(e) for e in args.eps.split(",")):
                for label, cls in (("PGD-L1", PGD), ("APGD-L1", APGD), ("APGD-T-L1", APGDTargeted)):
                    result, seconds = _timed(cls(model, eps=eps, steps=args.steps, norm="l1", seed=0), x, y)
                    print(_l1_row(f"{name} {label}", eps, result, x, seconds), flush=True)
        for k in (int(v) for v in args.k.split(",")):
            for queries in (int(q) for q in args.queries.split(",")):
                if "sparse-rs" not in skip:
                    result, seconds = _timed(SparseRS(model, k=k, n_queries=queries, seed=0), x, y)
                    print(_l0_row(f"{name} Sparse-RS", f"k={k}, {queries} queries", result, x, seconds), flush=True)
                if "de" not in skip:
                    de = DifferentialEvolution(model, pixels=k, popsize=100, generations=queries, max_queries=queries,
                                               seed=0)
                    result, seconds = _timed(de, x, y)
                    print(_l0_row(f"{name} DE", f"k={k}, {queries} queries", result, x, seconds), flush=True)
        if "jsma" not in skip:
            result, seconds = _timed(JSMA(model, theta=1.0, gamma=0.1, seed=0), x, y)
            print(_l0_row(f"{name} JSMA (random target)", "gamma=0.1", result, x, seconds), flush=True)


if __name__ == "__main__":
    main()
