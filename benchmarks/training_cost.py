"""Cost of one epoch of each adversarial training objective against standard training, measured in one run.

    python benchmarks/training_cost.py --n 6000 --repeats 3

Prints, per objective, the median seconds per epoch over ``--repeats`` epochs on ``--n`` MNIST training images
(``cnn-small``, batch 128) and the ratio to standard training.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from alva.data import fixed_subset, load_mnist
from alva.models import create
from alva.training import TRADES, FastFGSM, FGSMMix, PGDTraining, Standard, TrainSettings, fit


def epoch_seconds(objective, data, repeats: int) -> float:
    times = []
    for seed in range(repeats):
        torch.manual_seed(seed)
        model = create("cnn-small")
        started = time.perf_counter()
        fit(model, data, TrainSettings(epochs=1, batch_size=128, seed=seed), objective=objective, progress=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = fixed_subset(*load_mnist("train"), args.n, seed=0)
    objectives = [("standard", Standard()), ("fgsm-mix (eps 0.25)", FGSMMix(0.25)), ("fast (eps 0.3)", FastFGSM(0.3)),
                  ("pgd, 10 steps", PGDTraining(0.3, steps=10)), ("trades, 10 steps", TRADES(0.3, steps=10))]
    rows = [(name, epoch_seconds(objective, data, args.repeats)) for name, objective in objectives]
    reference = rows[0][1]
    print(f"\nOne epoch on {args.n} MNIST training images, cnn-small, batch 128, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}")
    print("| objective | seconds per epoch | ratio to standard |\n|---|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / reference:.2f} |")


if __name__ == "__main__":
    main()
