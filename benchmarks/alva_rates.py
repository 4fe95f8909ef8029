"""ALVA success, validity and valid adversarial rate against a classifier at several latent eps, one step and
iterative: the README's ALVA table.

    python benchmarks/alva_rates.py [--n 1000] [--eps 0.25,0.5,1.0] [--steps 1,10]
"""

from __future__ import annotations

import argparse

from alva.attacks.alva import ALVA, alva_summary
from alva.models import load, load_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", default="0.25,0.5,1.0")
    parser.add_argument("--steps", default="1,10")
    parser.add_argument("--generator", default="mnist/acwgan-gp")
    parser.add_argument("--classifier", default="mnist/cnn-small")
    parser.add_argument("--oracle", default="mnist/mlp")
    args = parser.parse_args()
    generator, classifier, oracle = load_generator(args.generator), load(args.classifier), load(args.oracle)
    z, y = generator.get_noise(args.n, seed=0), generator.get_labels(args.n, seed=0)
    print("| latent eps | attack | success | validity | valid adversarial | latent L2 | pixel L2 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for eps in (float(e) for e in args.eps.split(",")):
        for steps in (int(s) for s in args.steps.split(",")):
            s = alva_summary(ALVA(generator, classifier, eps=eps, steps=steps, oracle=oracle)(z, y))
            name = "1 step" if steps == 1 else f"{steps} steps"
            print(f"| {eps} | {name} | {s['success']:.3f} | {s['validity']:.3f} | {s['valid_adversarial']:.3f} | "
                  f"{s['latent_l2']:.2f} | {s['pixel_l2']:.2f} |")


if __name__ == "__main__":
    main()
