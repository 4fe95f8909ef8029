"""``alva alva generate`` (ALVA data augmentation) and ``alva converge`` (convergence training)."""

from __future__ import annotations

import argparse

from alva import distributed
from alva.cli.common import add_common, add_numbers, finish, paragraph, settings_from
from alva.cli.inputs import add_data_options, add_model_options, fraction, load_splits, subset
from alva.cli.model_inputs import (
    add_generator_options,
    check_generator_fits,
    generator_images,
    load_model_as,
    load_user_generator,
)
from alva.cli.run_folder import claim
from alva.training.augment import KEEP, GenerationSettings, generate_dataset
from alva.training.convergence import ConvergenceSettings, converge
from alva.training.loop import TrainSettings

GENERATE_DESCRIPTION = paragraph("""
Attack n latent vectors with ALVA and write the kept G(z') with their labels to OUT/dataset.safetensors, in chunks:
rerun after a stop to go on. The generator (a zoo name, run folder or the user's FILE.py:FUNCTION) must make images
of the classifier's input shape.
""")

CONVERGE_DESCRIPTION = paragraph("""
Repeat: measure ALVA on unseen latent vectors, add valid ALVA samples to the training data, retrain; until the
success rate is below --threshold or --rounds is reached. Resumable after every round. The generator's images must
have the shape and classes of --data.
""")


def _add_generation(p: argparse.ArgumentParser, n: int) -> None:
    add_generator_options(p, "mnist/acwgan-gp")
    add_model_options(p, default="mnist/mlp", name="--oracle")
    p.add_argument("--n", type=int, default=n, help="latent vectors to attack")
    p.add_argument("--eps", type=fraction, default=0.5, help="latent L-inf (or L2) radius")
    p.add_argument("--steps", type=int, default=1, help="1: the one-step ALVA formula; more: iterative")
    p.add_argument("--norm", default="linf", choices=["linf", "l2"])
    add_numbers(p, chunk_size=500, seed=0)


def register(commands) -> None:
    p = commands.add_parser("alva", help="ALVA: adversarial latent vector adjustment")
    sub = p.add_subparsers(dest="alva_command", required=True, metavar="ACTION")
    g = sub.add_parser("generate", help="generate a labelled adversarial data set through a generator",
                       description=GENERATE_DESCRIPTION)
    add_model_options(g, name="--classifier")
    _add_generation(g, 10000)
    g.add_argument("--keep", default="valid", choices=KEEP,
                   help="valid adversarial samples only (default), all successful ones, or all")
    add_common(g, run_generate, out="output folder",
               resume="go on with the generation in --out: finished chunks are kept")

    c = commands.add_parser("converge", help="convergence training: generate with ALVA, retrain, repeat",
                            description=CONVERGE_DESCRIPTION)
    add_model_options(c, name="--classifier")
    add_data_options(c, splits=True)
    _add_generation(c, 2000)
    add_numbers(c, rounds=3, threshold=0.05)
    c.add_argument("--n-eval", type=int, default=1000, help="unseen latent vectors to measure each round")
    c.add_argument("--epochs", type=int, default=1, help="training epochs per round")
    add_numbers(c, lr=5e-4)
    c.add_argument("--train-size", type=int, default=None, help="real training images (default: all 60000)")
    c.add_argument("--pgd-eps", type=fraction, default=0.1, help="pixel PGD eps measured each round")
    add_common(c, run_converge, out="run folder", resume="continue the run in --out after its last finished round")


def run_generate(args: argparse.Namespace) -> int:
    # Under torchrun each process generates its share of the chunks and rank 0 merges them.
    args.device = distributed.init_from_env(args.device)
    generator = load_user_generator(args.generator, kwargs=args.generator_kwargs, device=args.device)
    images = generator_images(generator, args.generator)
    if not images.num_classes:
        raise ValueError(f"the generator {args.generator} is unconditional: ALVA generate labels its samples with "
                         "the class they were generated for, so it needs a conditional generator")
    classifier = load_model_as(args, images, "--classifier", args.classifier)
    oracle = load_model_as(args, images, "--oracle", args.oracle) if args.oracle not in (None, "", "none") else None
    out = claim(args, {"--generator": generator, "--classifier": classifier, "--oracle": oracle})
    summary = generate_dataset(generator, classifier, oracle, out, settings_from(GenerationSettings, args),
                               device=args.device, progress=not args.no_progress)
    if not distributed.is_main():
        return 0
    return finish(summary, f"{args.out}/dataset.safetensors, summary.json, grid.png")


def run_converge(args: argparse.Namespace) -> int:
    test_data, train_data, classifier = load_splits(args, name="--classifier")
    generator = load_user_generator(args.generator, kwargs=args.generator_kwargs)
    check_generator_fits(generator_images(generator, args.generator), test_data, f"the data {args.data!r}")
    oracle = load_model_as(args, test_data, "--oracle", args.oracle)
    train = subset(train_data, args.train_size or None, args.seed)
    test = test_data.tensors()
    settings = ConvergenceSettings(rounds=args.rounds, threshold=args.threshold, n_eval=args.n_eval,
                                   generation=settings_from(GenerationSettings, args, keep="valid"),
                                   training=TrainSettings(epochs=args.epochs, lr=args.lr, seed=args.seed),
                                   pgd_eps=args.pgd_eps)
    out = claim(args, {"--classifier": classifier, "--generator": generator, "--oracle": oracle, "training data": train,
                       "test data": test})
    converge(classifier, generator, oracle, train, test, subset(test_data, 500, args.seed), out,
             settings, progress=not args.no_progress)
    print(f"wrote {args.out}/rounds.json, rounds.png, model.safetensors")
    return 0
