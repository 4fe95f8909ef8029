"""ALVA generation throughput on this machine: images per second for the one-step and the iterative
attack, against the floor of the same run (one generator forward pass per image, no attack).

    python benchmarks/alva_throughput.py [--n 1000] [--repeats 5] [--steps 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from alva.attacks.alva import ALVA
from alva.models import load, load_generator


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--generator", default="mnist/acwgan-gp")
    parser.add_argument("--classifier", default="mnist/cnn-small")
    args = parser.parse_args()

    generator, classifier = load_generator(args.generator), load(args.classifier)
    z = generator.get_noise(args.n, seed=0)
    y = generator.get_labels(args.n, seed=0)
    methods: dict[str, Callable[[], object]] = {
        "floor: G(z, y) only": lambda: torch.no_grad()(generator)(z, y),
        "ALVA, 1 step (seed formula)": lambda: ALVA(generator, classifier, eps=0.5)(z, y),
        f"ALVA, {args.steps} steps": lambda: ALVA(generator, classifier, eps=0.5, steps=args.steps)(z, y),
    }
    for fn in methods.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeats):
        for name, fn in methods.items():  # interleaved, so machine drift hits all alike
            times[name].append(timed(fn))
    floor = statistics.median(times["floor: G(z, y) only"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}; "
          f"{args.generator} against {args.classifier}, {args.n} latent vectors, median of {args.repeats}\n")
    print("| method | median seconds | images per second | ratio to floor |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {args.n / median:,.0f} | {median / floor:.2f} |")


if __name__ == "__main__":
    main()
