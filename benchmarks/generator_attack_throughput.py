"""Throughput of a trained AdvGAN generator attack against one PGD-40 call on the same images: images per
second, success and their ratio (torch on one thread unless --threads).

    python benchmarks/generator_attack_throughput.py [--generator runs/genattack/advgan-cnn-small] [--n 1000]

Without a trained generator at --generator it trains a quick one first (1 epoch on 2000 images, not timed).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alva.attacks import PGD
from alva.attacks.generator_attacks import AdvGANAttack, load_perturbation_generator
from alva.data import fixed_subset, load_mnist
from alva.models import load


def best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist/cnn-small")
    parser.add_argument("--generator", default="runs/genattack/advgan-cnn-small")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=0)
    if (Path(args.generator) / "generator.safetensors").exists() or Path(args.generator).is_file():
        generator = load_perturbation_generator(args.generator)
    else:
        from alva.training.advgan import AdvGANSettings, train_advgan

        print(f"no generator at {args.generator}: training a quick one (1 epoch, 2000 images)")
        data = fixed_subset(*load_mnist("train"), 2000, seed=0)
        generator, _ = train_advgan(model, data, args.eps, AdvGANSettings(epochs=1, batch_size=64), progress=False)
    advgan = AdvGANAttack(model, generator, args.eps)
    pgd = PGD(model, eps=args.eps, steps=40, seed=0)
    advgan_s = best_time(lambda: advgan(x, y), args.repeats)
    pgd_s = best_time(lambda: pgd(x, y), max(1, args.repeats - 2))
    figures = {
        "model": args.model, "eps": args.eps, "n": args.n, "threads": args.threads,
        "advgan_images_per_s": args.n / advgan_s, "pgd40_images_per_s": args.n / pgd_s,
        "speedup": pgd_s / advgan_s,
        "advgan_success": advgan(x, y).success_rate, "pgd40_success": pgd(x, y).success_rate,
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
