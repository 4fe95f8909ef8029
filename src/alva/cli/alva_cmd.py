"""``alva alva generate`` (ALVA data augmentation) and ``alva converge`` (convergence training)."""

from __future__ import annotations

import argparse

from alva import distributed
from alva.cli.common import add_common, paragraph
from alva.data import fixed_subset, load_mnist
from alva.models import load, load_generator
from alva.training.augment import KEEP, GenerationSettings, generate_dataset
from alva.training.convergence import ConvergenceSettings, converge
from alva.training.loop import TrainSettings

GENERATE_DESCRIPTION = paragraph("""
Attack n latent vectors with ALVA and write the kept G(z') with their labels to OUT/dataset.safetensors, in chunks:
rerun after a stop to go on.
""")

CONVERGE_DESCRIPTION = paragraph("""
Repeat: measure ALVA on unseen latent vectors, add valid ALVA samples to the training data, retrain; until the
success rate is below --threshold or --rounds is reached. Resumable after every round.
""")


def _add_generation(p: argparse.ArgumentParser, n: int) -> None:
    p.add_argument("--generator", default="mnist/acwgan-gp", help="zoo name or weights of a generator")
    p.add_argument("--oracle", default="mnist/mlp", help="independent classifier that judges validity")
    p.add_argument("--n", type=int, default=n, help="latent vectors to attack")
    p.add_argument("--eps", type=float, default=0.5, help="latent L-inf (or L2) radius")
    p.add_argument("--steps", type=int, default=1, help="1: the one-step ALVA formula; more: iterative")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"])
    p.add_argument("--chunk-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)


def _generation(args: argparse.Namespace, keep: str) -> GenerationSettings:
    return GenerationSettings(n=args.n, eps=args.eps, steps=args.steps, norm=args.norm, chunk_size=args.chunk_size,
                              seed=args.seed, keep=keep)


def register(commands) -> None:
    p = commands.add_parser("alva", help="ALVA: adversarial latent vector adjustment")
    sub = p.add_subparsers(dest="alva_command", required=True, metavar="ACTION")
    g = sub.add_parser("generate", help="generate a labelled adversarial data set through a generator",
                       description=GENERATE_DESCRIPTION)
    g.add_argument("--classifier", default="mnist/cnn-small", help="the model under attack")
    _add_generation(g, 10000)
    g.add_argument("--keep", default="valid", choices=KEEP,
                   help="valid adversarial samples only (default), all successful ones, or all")
    g.add_argument("--out", required=True)
    add_common(g)
    g.set_defaults(handler=run_generate)

    c = commands.add_parser("converge", help="convergence training: generate with ALVA, retrain, repeat",
                            description=CONVERGE_DESCRIPTION)
    c.add_argument("--classifier", default="mnist/cnn-small", help="the classifier to make robust (a copy)")
    _add_generation(c, 2000)
    c.add_argument("--rounds", type=int, default=3)
    c.add_argument("--threshold", type=float, default=0.05)
    c.add_argument("--n-eval", type=int, default=1000, help="unseen latent vectors to measure each round")
    c.add_argument("--epochs", type=int, default=1, help="training epochs per round")
    c.add_argument("--lr", type=float, default=5e-4)
    c.add_argument("--train-size", type=int, default=None, help="real training images (default: all 60000)")
    c.add_argument("--pgd-eps", type=float, default=0.1, help="pixel PGD eps measured each round")
    c.add_argument("--out", required=True)
    add_common(c)
    c.set_defaults(handler=run_converge)


def run_generate(args: argparse.Namespace) -> int:
    # Under torchrun each process generates its share of the chunks and rank 0 merges them.
    args.device = distributed.init_from_env(args.device)
    oracle = load(args.oracle, device=args.device) if args.oracle else None
    summary = generate_dataset(load_generator(args.generator, device=args.device),
                               load(args.classifier, device=args.device), oracle, args.out,
                               _generation(args, args.keep), device=args.device, progress=not args.no_progress)
    if not distributed.is_main():
        return 0
    print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    print(f"wrote {args.out}/dataset.safetensors, summary.json, grid.png")
    return 0


def run_converge(args: argparse.Namespace) -> int:
    train = load_mnist("train", args.data_root)
    if args.train_size:
        train = fixed_subset(*train, args.train_size, seed=args.seed)
    test = load_mnist("test", args.data_root)
    settings = ConvergenceSettings(rounds=args.rounds, threshold=args.threshold, n_eval=args.n_eval,
                                   generation=_generation(args, "valid"),
                                   training=TrainSettings(epochs=args.epochs, lr=args.lr, seed=args.seed),
                                   pgd_eps=args.pgd_eps)
    converge(load(args.classifier), load_generator(args.generator), load(args.oracle), train, test,
             fixed_subset(*test, 500, seed=args.seed), args.out, settings, progress=not args.no_progress)
    print(f"wrote {args.out}/rounds.json, rounds.png, model.safetensors")
    return 0
