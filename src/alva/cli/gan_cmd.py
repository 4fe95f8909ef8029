"""``alva gan train``: train an AC-WGAN-GP (conditional) or WGAN-GP (unconditional) generator of 1 x 28 x 28
images (MNIST, or the user's data of that shape)."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from alva.cli.common import add_common, add_numbers, settings_from
from alva.cli.inputs import add_data_options, add_model_options, load_data, subset
from alva.cli.model_inputs import MNIST_SHAPE, load_model_as
from alva.cli.run_folder import claim
from alva.data import ImageData
from alva.models import zoo
from alva.models.gan import save_generator
from alva.training.classifier import current_command
from alva.training.gan import GanSettings, make_models, train_gan


def register(commands) -> None:
    p = commands.add_parser("gan", help="train generative models (AC-WGAN-GP, WGAN-GP) on MNIST")
    sub = p.add_subparsers(dest="gan_command", required=True, metavar="SUBCOMMAND")
    t = sub.add_parser("train", help="train a generator; writes generator.safetensors + generator.json (card)",
                       description="Train a WGAN-GP generator (Gulrajani et al. 2017), with --conditional an "
                                   "AC-WGAN-GP (Odena et al. 2017). Writes checkpoint.safetensors after every "
                                   "epoch, metrics.jsonl, TensorBoard logs, samples/epoch_NNN.png and at the end "
                                   "generator.safetensors + generator.json to --out. The generator and critic "
                                   "are built for 1x28x28 images: --data must have that shape.")
    mode = t.add_mutually_exclusive_group()
    mode.add_argument("--conditional", dest="conditional", action="store_true", default=True,
                      help="AC-WGAN-GP: G(z, y) with an auxiliary classifier in the critic (default)")
    mode.add_argument("--unconditional", dest="conditional", action="store_false", help="WGAN-GP: G(z)")
    add_numbers(t, epochs=5, batch_size=64, lr=2e-4)
    t.add_argument("--n-critic", type=int, default=5, help="critic steps per generator step")
    t.add_argument("--gp-lambda", type=float, default=10.0, help="weight of the gradient penalty")
    add_numbers(t, latent_dim=64, seed=0)
    t.add_argument("--train-size", type=int, default=None, help="train on a fixed stratified subset of this size")
    add_data_options(t, splits=True)
    add_model_options(t, default="mnist/mlp", name="--oracle")
    add_numbers(t, eval_samples=10_000)
    t.add_argument("--monitor-samples", type=int, default=1000,
                   help="after every epoch, log the oracle's label agreement on this many samples (0: off)")
    t.add_argument("--aux-fake-weight", type=float, default=0.0,
                   help="weight of the critic's auxiliary loss on generated images (Odena et al.: 1; default 0 "
                        "trains that head on real images only)")
    add_common(t, run, out="run folder", resume="continue the run in --out from its last finished epoch")


def run(args: argparse.Namespace) -> int:
    settings = settings_from(GanSettings, args)
    train = load_data(args, args.train_split)
    test = load_data(args, args.test_split)
    if tuple(train.shape) != MNIST_SHAPE or train.task != "multiclass":
        raise ValueError(f"alva gan train builds generators of 1x28x28 images of one class each; {args.data} has "
                         f"{'x'.join(map(str, train.shape))} {train.task} images")
    oracle = load_model_as(args, test, "--oracle", args.oracle) if args.oracle != "none" else None
    x_train, y_train = subset(train, args.train_size, args.seed)
    out = claim(args, {"training data": (x_train, y_train), "--oracle": oracle})
    torch.manual_seed(args.seed)
    generator, critic = make_models(args.conditional, args.latent_dim, train.num_classes)
    monitor = None
    if oracle is not None and args.monitor_samples > 0 and args.conditional:
        monitor = agreement_monitor(oracle, args.monitor_samples)
    train_gan(generator, critic, (x_train, y_train), settings, out=out, resume=args.resume,
              device=args.device, progress=not args.no_progress, monitor=monitor)
    generator.cpu().eval()
    card = {
        # for a conditional generator the classes it is conditioned on; else those of the data it learnt to draw
        "num_classes": int(generator.num_classes),
        "command": current_command(), "seed": args.seed, "epochs": args.epochs, "settings": asdict(settings),
        "train_size": len(x_train), "data_sha256": zoo.tensor_sha256(x_train),
        "data_sha256_of": "float32 training images as loaded by "
                          + ("alva.data.load_mnist" if args.data == "mnist" else f"alva.data.load({args.data!r})"),
        "train_time_s": round(generator.train_time_s, 1),
        "alva_version": __import__("alva").__version__, "torch_version": torch.__version__,
    }
    if oracle is not None:
        card.update(measure(generator, oracle.cpu(), args.oracle, args.eval_samples, test))
    save_generator(generator, card, f"{args.out}/generator.safetensors")
    figures = {k: v for k, v in card.items() if k.startswith(("label_agreement", "frechet"))}
    print(f"{figures}; weights and card in {args.out}/generator.safetensors")
    return 0


def agreement_monitor(oracle, n: int):
    """A ``train_gan`` monitor: the oracle's label agreement on ``n`` fixed samples."""
    from alva.evaluation.generative import label_agreement

    return lambda generator: {"label_agreement": label_agreement(generator, oracle, n, seed=0)}


def measure(generator, oracle, oracle_name: str, n: int, test: ImageData) -> dict:
    """The card's quality figures under the oracle ``oracle_name``."""
    from alva.evaluation.generative import class_histogram, generator_frechet, label_agreement
    from alva.models.generative import is_conditional

    started = time.perf_counter()
    real = test.subset(torch.arange(min(n, len(test)))).tensors()[0]
    figures = {"oracle": oracle_name, "eval_samples": n,
               "frechet_distance_oracle_features": round(generator_frechet(generator, oracle, real, n, seed=0), 4),
               "frechet_distance_of": f"Frechet distance on {oracle_name} penultimate-layer features between "
                                      f"{len(real)} real {'MNIST' if test.source == 'mnist' else test.source} "
                                      f"test images and {n} generated ones (not FID)",
               "oracle_class_histogram": [round(v, 4) for v in class_histogram(generator, oracle, n, seed=0)]}
    if is_conditional(generator):
        figures["label_agreement"] = round(label_agreement(generator, oracle, n, seed=0), 4)
    figures["eval_time_s"] = round(time.perf_counter() - started, 1)
    return figures
