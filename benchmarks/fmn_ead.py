"""FMN under each norm and EAD on the shipped MNIST models: success rate over the clean-correct images, median and
mean norm of the successful perturbations, seconds (the reference figures of the minimum-norm docs page).

    OMP_NUM_THREADS=1 python benchmarks/fmn_ead.py [--n 1000] [--models mnist/cnn-small,mnist/cnn-small-pgd]
        [--norms l0,l1,l2,linf] [--steps 100] [--binary-steps 5] [--inner-steps 100] [--initial-const 0.01]
        [--beta 0.001] [--no-ead] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from alva.attacks import EAD, FMN, MinimumNormResult
from alva.data import fixed_subset, load_mnist
from alva.models import load


def row(model_name: str, attack: str, result: MinimumNormResult, correct: torch.Tensor, seconds: float) -> str:
    success = result.success & correct
    found = result.distances[success].double()
    median = f"{found.median().item():.4g}" if len(found) else "-"
    mean = f"{found.mean().item():.4g}" if len(found) else "-"
    rate = success.sum().item() / max(1, int(correct.sum()))
    return f"| {model_name} | {attack} | {result.norm} | {rate:.3f} | {median} | {mean} | {seconds:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    parser.add_argument("--norms", default="l0,l1,l2,linf", help="the norms of FMN")
    parser.add_argument("--steps", type=int, default=100, help="FMN steps")
    parser.add_argument("--binary-steps", type=int, default=5, help="EAD binary-search steps")
    parser.add_argument("--inner-steps", type=int, default=100, help="EAD steps per binary-search step")
    parser.add_argument("--initial-const", type=float, default=0.01, help="EAD's first constant")
    parser.add_argument("--beta", type=float, default=1e-3, help="EAD's L1 weight")
    parser.add_argument("--no-ead", action="store_true", help="FMN only")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=0)
    print(f"{args.n} MNIST test images (seed 0), torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
          "success over the clean-correct images")
    print("| model | attack | norm | success | median norm | mean norm | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for model_name in args.models.split(","):
        model = load(model_name)
        with torch.no_grad():
            correct = model(x).argmax(dim=1) == y
        for norm in args.norms.split(","):
            start = time.perf_counter()
            result = FMN(model, norm=norm, steps=args.steps)(x, y)
            print(row(model_name, f"FMN ({args.steps} steps)", result, correct, time.perf_counter() - start),
                  flush=True)
        if args.no_ead:
            continue
        ead = EAD(model, steps=args.inner_steps, binary_steps=args.binary_steps, initial_const=args.initial_const,
                  beta=args.beta)
        start = time.perf_counter()
        result = ead(x, y)
        name = f"EAD ({args.binary_steps} x {args.inner_steps} steps, beta {args.beta:g}, c0 {args.initial_const:g})"
        print(row(model_name, name, result, correct, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
