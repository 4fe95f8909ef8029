"""Success, perturbation size and time of the minimum-norm attacks DeepFool, FAB and FAB-T on shipped MNIST models.

For each model and attack: the clean accuracy, the success rate on the images the model classifies correctly,
the median and mean norm of the successful perturbations of those images (in the attack's norm) and the
wall-clock seconds of the attack calls (batches of ``--batch-size``, on ``--threads`` torch threads). The budget
is AutoAttack's: 100 steps and 1 restart for FAB and FAB-T (9 target classes); DeepFool runs its default 50
steps with overshoot 0.02.

Usage: ``python benchmarks/minimum_norm.py [--models mnist/cnn-small,mnist/cnn-small-pgd] [--n 1000]
[--attacks deepfool-l2,...] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from alva import models
from alva.attacks import FAB, DeepFool, FABTargeted
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json

ATTACKS = {
    "deepfool-l2": lambda m, a: DeepFool(m, norm="l2", steps=50, overshoot=0.02, seed=a.seed),
    "deepfool-linf": lambda m, a: DeepFool(m, norm="linf", steps=50, overshoot=0.02, seed=a.seed),
    "fab-linf": lambda m, a: FAB(m, norm="linf", steps=a.steps, restarts=1, seed=a.seed),
    "fab-l2": lambda m, a: FAB(m, norm="l2", steps=a.steps, restarts=1, seed=a.seed),
    "fab-l1": lambda m, a: FAB(m, norm="l1", steps=a.steps, restarts=1, seed=a.seed),
    "fab-t-linf": lambda m, a: FABTargeted(m, norm="linf", steps=a.steps, restarts=1, n_target_classes=9,
                                           seed=a.seed),
}


def measure(model: torch.nn.Module, attack_name: str, x: torch.Tensor, y: torch.Tensor,
            args: argparse.Namespace) -> dict:
    """One attack over the images in batches: its figures as a dict."""
    attack = ATTACKS[attack_name](model, args)
    distances, seconds = [], 0.0
    for start in range(0, len(x), args.batch_size):
        xb, yb = x[start:start + args.batch_size], y[start:start + args.batch_size]
        began = time.perf_counter()
        result = attack(xb, yb)
        seconds += time.perf_counter() - began
        distances.append(result.distances)
    distance = torch.cat(distances)
    with torch.no_grad():
        correct = torch.cat([model(x[i:i + args.batch_size]).argmax(1) for i in range(0, len(x), args.batch_size)]) == y
    broken = correct & torch.isfinite(distance)
    sizes = distance[broken]
    return {"model": args.model, "attack": attack_name, "n": len(x), "clean_acc": correct.float().mean().item(),
            "success_on_correct": broken.sum().item() / max(correct.sum().item(), 1),
            "median_norm": sizes.median().item() if len(sizes) else float("nan"),
            "mean_norm": sizes.mean().item() if len(sizes) else float("nan"),
            "seconds": round(seconds, 2), "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    parser.add_argument("--attacks", default=",".join(ATTACKS))
    parser.add_argument("--n", type=int, default=1000, help="MNIST test images (fixed stratified subset, seed 0)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100, help="FAB and FAB-T steps (AutoAttack: 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=0)
    rows = []
    print(f"{'model':22s} {'attack':14s} {'clean':>6s} {'success':>8s} {'median':>8s} {'mean':>8s} {'seconds':>8s}")
    for name in args.models.split(","):
        args.model = name
        model = models.load(name)
        for attack_name in args.attacks.split(","):
            row = measure(model, attack_name, x, y, args)
            rows.append(row)
            print(f"{name:22s} {attack_name:14s} {row['clean_acc']:6.3f} {row['success_on_correct']:8.3f} "
                  f"{row['median_norm']:8.4f} {row['mean_norm']:8.4f} {row['seconds']:8.1f}", flush=True)
            if args.json is not None:
                atomic_write_json(args.json, {"rows": rows}, kind="minimum-norm-benchmark")


if __name__ == "__main__":
    main()
