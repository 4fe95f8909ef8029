"""``alva advgan train|attack|figure`` (AdvGAN perturbation generators) and ``alva atgan finetune|critic``
(adversarial conditional generators for unrestricted adversarial examples)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alva.cli import inputs
from alva.cli.common import add_common, add_numbers, finish, paragraph, settings_from
from alva.cli.model_inputs import (
    GENERATOR_HELP,
    MNIST_SHAPE,
    check_generator_fits,
    generator_images,
    load_model_as,
    load_user_generator,
    mnist_default,
)
from alva.cli.run_folder import claim
from alva.data import ImageData
from alva.results import Batch
from alva.tracking.files import atomic_write_json

ADVGAN_TRAIN_DESCRIPTION = paragraph("""
Train an AdvGAN perturbation generator (Xiao et al. 2018) against --model; checkpoint after every epoch (--resume
goes on), metrics.jsonl, samples/epoch_NNN.png, generator.safetensors, then evaluate on test images (summary.json,
grid.png).
""")
ORACLE_HELP = ("independent classifier that judges validity (default: mnist/mlp for 1x28x28 data, none for other "
               "data; 'none': no validity)")


def register(commands) -> None:
    p = commands.add_parser("advgan", help="AdvGAN: train a perturbation generator, attack with it")
    sub = p.add_subparsers(dest="advgan_command", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a perturbation generator against a classifier",
                       description=ADVGAN_TRAIN_DESCRIPTION)
    inputs.add_model_options(t)
    inputs.add_data_options(t, splits=True)
    t.add_argument("--eps", type=inputs.fraction, default=None, help=f"L-inf bound, e.g. 8/255 ({inputs.EPS_HELP})")
    add_numbers(t, epochs=2, batch_size=64, lr=1e-3, gan_weight=0.1, hinge_weight=0.05)
    t.add_argument("--hinge-bound", type=float, default=3.0, help="L2 size above which the hinge term acts")
    t.add_argument("--width", type=int, default=32, help="generator width (cost grows with its square)")
    t.add_argument("--targeted", action="store_true", help="train a targeted generator (random targets)")
    t.add_argument("--train-size", type=int, default=10000, help="training images (fixed stratified subset)")
    add_numbers(t, seed=0)
    _add_eval(t)
    add_common(t, run_advgan_train, out="run folder", resume="continue the run in --out from its last finished epoch")

    a = sub.add_parser("attack", help="attack test images with a trained perturbation generator")
    inputs.add_model_options(a)
    inputs.add_data_options(a)
    a.add_argument("--generator", required=True, help="run folder or generator.safetensors of advgan train")
    a.add_argument("--eps", type=inputs.fraction, default=None, help="L-inf bound (default: the generator's eps)")
    a.add_argument("--target", default=None, choices=["random", "least-likely"], help="for a targeted generator")
    _add_eval(a)
    add_common(a, run_advgan_attack, out="output folder")

    f = sub.add_parser("figure", help="bar chart of success and validity from summary.json files")
    f.add_argument("summaries", nargs="+", help="LABEL=PATH/summary.json")
    f.add_argument("--title", default="")
    f.add_argument("--out", required=True, help="PNG path")
    f.set_defaults(handler=run_figure)

    g = commands.add_parser("atgan", help="adversarial conditional generators: AT-GAN fine-tuning, or a fresh "
                                          "generator against a trained critic")
    gsub = g.add_subparsers(dest="atgan_command", required=True, metavar="ACTION")
    ft = gsub.add_parser("finetune", help="fine-tune a copy of a generator so G_adv(z, y) fools the classifier",
                         description="AT-GAN (Wang et al. 2019): fine-tune a copy of --generator to fool "
                                     "--classifier while staying close to the original (--distance l2: per image; "
                                     "frechet: Frechet distance on --reference features), then measure success, "
                                     "oracle validity and Frechet distance to real test images.")
    ft.add_argument("--generator", default="mnist/acwgan-gp", metavar="SPEC", help=GENERATOR_HELP)
    ft.add_argument("--distance", default="l2", choices=["l2", "frechet"])
    ft.add_argument("--dist-weight", type=float, default=None, help="default: 0.5 for l2, 0.01 for frechet")
    ft.add_argument("--reference", default="mnist/cnn-small-fast", help="classifier whose features frechet uses")
    ft.add_argument("--critic", default=None, help="train_gan checkpoint whose critic keeps images realistic")
    ft.add_argument("--critic-weight", type=float, default=0.0)
    _add_atgan(ft, run_atgan_finetune)

    cr = gsub.add_parser("critic", help="train a fresh generator against a frozen, trained critic and the classifier",
                         description="Train a fresh conditional generator against a frozen AC-WGAN-GP critic (its "
                                     "Wasserstein score and auxiliary classifier; the critic never trains) and the "
                                     "C&W margin on --classifier, then measure success, oracle validity and "
                                     "Frechet distance to real test images.")
    cr.add_argument("--critic", default=None,
                    help="train_gan checkpoint holding the trained critic (default: the critic shipped with "
                         "mnist/acwgan-gp)")
    cr.add_argument("--adv-weight", type=float, default=1.0)
    _add_atgan(cr, run_atgan_critic)


def _add_eval(p: argparse.ArgumentParser) -> None:
    inputs.add_model_options(p, default=None, name="--oracle")
    p._option_string_actions["--oracle"].help = ORACLE_HELP  # its default depends on the data
    p.add_argument("--n-eval", type=int, default=1000, help="test images to attack (fixed stratified subset)")


def _add_atgan(p: argparse.ArgumentParser, handler) -> None:
    inputs.add_model_options(p, name="--classifier")
    inputs.add_model_options(p, default="mnist/mlp", name="--oracle")
    inputs.add_data_options(p)
    add_numbers(p, epochs=2)
    p.add_argument("--steps", type=int, default=200, help="generator steps per epoch")
    add_numbers(p, batch_size=64, lr=1e-4, seed=0)
    p.add_argument("--n-eval", type=int, default=2000, help="samples to measure")
    add_common(p, handler, out="run folder", resume="continue the run in --out from its last finished epoch")


def throughput(fn, n: int, repeats: int = 3) -> float:
    """Images per second of ``fn()`` on ``n`` images: the best of ``repeats`` timed calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def _oracle(args: argparse.Namespace, data: ImageData):
    """The validity oracle of ``args.oracle`` (default: mnist/mlp on MNIST-shaped data), checked to fit."""
    args.oracle = mnist_default(args.oracle, data, "mnist/mlp") or "none"
    return load_model_as(args, data, "--oracle", args.oracle) if args.oracle != "none" else None


def _advgan_eval(model, generator, args, out: Path, eps, target, test: ImageData, oracle) -> dict:
    from alva.attacks.generator_attacks import AdvGANAttack, advgan_summary
    from alva.report.figures import adversarial_grid

    x, y = inputs.subset(test, args.n_eval, 0)
    x, y = x.to(args.device), y.to(args.device)
    attack = AdvGANAttack(model, generator, eps, target=target, seed=0)
    result = attack(x, y)
    summary = {"model": args.model, "eps": attack.eps, "oracle": args.oracle, **advgan_summary(result, x, y, oracle),
               "images_per_s": throughput(lambda: attack(x, y), len(x))}
    batch = Batch.from_logits(x, result.x_adv, y, result.clean_logits, result.adv_logits, result.success)
    adversarial_grid(out / "grid.png", batch, title=f"AdvGAN eps={attack.eps} vs {args.model}: success "
                     f"{summary['success']:.1%}, oracle validity {summary.get('validity', float('nan')):.1%}")
    atomic_write_json(out / "summary.json", summary, kind="advgan-summary")
    return summary


def run_advgan_train(args: argparse.Namespace) -> int:
    from alva.training.advgan import AdvGANSettings, train_advgan
    from alva.training.classifier import current_command

    settings = settings_from(AdvGANSettings, args)
    test, train, model = inputs.load_splits(args)
    oracle = _oracle(args, test)
    args.eps = args.eps if args.eps is not None else inputs.default_eps(test)
    data = inputs.subset(train, args.train_size, args.seed)
    out = claim(args, {"--model": model, "training data": data, "--oracle": oracle})
    generator, _ = train_advgan(model, data, args.eps, settings, out=out, resume=args.resume, device=args.device,
                                progress=not args.no_progress, num_classes=test.num_classes,
                                card={"target_model": args.model, "command": current_command()})
    summary = _advgan_eval(model, generator, args, out, args.eps, "random" if args.targeted else None, test, oracle)
    return finish(summary, f"{args.out}/generator.safetensors, summary.json, grid.png")


def run_advgan_attack(args: argparse.Namespace) -> int:
    from alva.attacks.generator_attacks import load_perturbation_generator

    test = inputs.load_data(args)
    model = inputs.load_model(args, test)
    oracle = _oracle(args, test)
    generator = load_perturbation_generator(args.generator, device=args.device)
    if generator.channels != test.shape[0]:
        raise ValueError(f"the perturbation generator {args.generator} takes {generator.channels}-channel images but "
                         f"{args.data} has {test.shape[0]} channels")
    if generator.num_classes and generator.num_classes != test.num_classes:
        raise ValueError(f"the targeted generator {args.generator} knows {generator.num_classes} target classes but "
                         f"{args.data} has {test.num_classes}")
    out = claim(args, {"--model": model, "--generator": generator, "--oracle": oracle})
    summary = _advgan_eval(model, generator, args, out, args.eps, args.target, test, oracle)
    return finish(summary, f"{args.out}/summary.json, grid.png")


def run_figure(args: argparse.Namespace) -> int:
    from alva.report import grouped_bars

    labels, rows = [], []
    for item in args.summaries:
        label, _, path = item.partition("=")
        if not path:
            raise ValueError(f"expected LABEL=PATH, got {item!r}")
        labels.append(label)
        rows.append(json.loads(Path(path).read_text()))
    series = {key.replace("_", " "): [r.get(key, float("nan")) for r in rows]
              for key in ("success", "validity", "valid_adversarial")}
    print(f"wrote {grouped_bars(args.out, labels, series, title=args.title or '', value_format='{:.0%}', ylim=1.3)}")
    return 0


def _atgan_inputs(args: argparse.Namespace, generator) -> tuple[ImageData, torch.nn.Module, torch.nn.Module]:
    """The real images, the classifier and the oracle, each checked to fit the generator's images."""
    data = inputs.load_data(args)
    images = generator_images(generator, args.generator) if generator is not None else None
    if images is None and tuple(data.shape) != MNIST_SHAPE:
        raise ValueError(f"the generator trained against the critic makes 1x28x28 images; {args.data} has "
                         f"{'x'.join(map(str, data.shape))} images")
    if images is not None:
        check_generator_fits(images, data, f"the data {args.data!r}")
    return data, inputs.load_model(args, data, name="--classifier"), load_model_as(args, data, "--oracle", args.oracle)


def _atgan_eval(g_adv, original, args, out: Path, loaded: tuple[ImageData, torch.nn.Module, torch.nn.Module]
                ) -> dict:
    from alva.attacks.generator_attacks import UnrestrictedGeneratorAttack, generator_attack_summary
    from alva.evaluation.generative import generator_frechet
    from alva.report.figures import adversarial_grid

    data, classifier, oracle = loaded
    attack = UnrestrictedGeneratorAttack(g_adv, classifier, oracle=oracle, reference=original)
    result = attack.sample(args.n_eval, seed=10_000)
    real = data.subset(torch.arange(min(args.n_eval, len(data)))).tensors()[0]  # the first n_eval images
    summary = {"classifier": args.classifier, "oracle": args.oracle, **generator_attack_summary(result),
               "frechet_to_real_adv": generator_frechet(g_adv, oracle, real, args.n_eval, seed=10_000),
               "frechet_of": f"Frechet distance on {args.oracle} penultimate features to {args.n_eval} real test "
                             "images",
               "images_per_s": throughput(lambda: attack.sample(args.n_eval, seed=10_000), args.n_eval)}
    if result.x is None or result.y is None or result.oracle_pred is None:
        raise RuntimeError("a generator attack with a reference generator and an oracle gives G(z, y), the classes "
                           "and the oracle's labels")
    summary["frechet_to_real_original"] = generator_frechet(original, oracle, real, args.n_eval, seed=10_000)
    with torch.no_grad():
        clean_logits = classifier(result.x)
        summary["original_success"] = (clean_logits.argmax(1) != result.y).float().mean().item()
        summary["original_validity"] = (oracle(result.x).argmax(1) == result.y).float().mean().item()
    batch = Batch.from_logits(result.x, result.x_adv, result.y, clean_logits, result.adv_logits, result.success)
    notes = [f"oracle={int(p)}" for p in result.oracle_pred.tolist()]
    adversarial_grid(out / "grid.png", batch, notes=notes,
                     title=f"{g_adv.card.get('method')} vs {args.classifier}: top G(z,y), middle G_adv(z,y); "
                           f"success {summary['success']:.1%}, validity {summary['validity']:.1%}")
    atomic_write_json(out / "summary.json", summary, kind="generator-attack-summary")
    return summary


def run_atgan_finetune(args: argparse.Namespace) -> int:
    from alva.training.atgan import ATGANSettings, finetune_atgan, load_critic
    from alva.training.classifier import current_command

    weight = args.dist_weight if args.dist_weight is not None else {"l2": 0.5, "frechet": 0.01}[args.distance]
    settings = settings_from(ATGANSettings, args, steps_per_epoch=args.steps, dist_weight=weight)
    original = load_user_generator(args.generator, device=args.device)
    loaded = _atgan_inputs(args, original)
    reference = load_model_as(args, loaded[0], "--reference", args.reference)
    critic = load_critic(args.critic).to(args.device) if args.critic else None
    out = claim(args, {"--generator": original, "--classifier": loaded[1], "--oracle": loaded[2],
                       "--reference": reference, "--critic": critic})
    g_adv, _ = finetune_atgan(original, loaded[1], settings, reference=reference, critic=critic, out=out,
                              resume=args.resume, device=args.device, progress=not args.no_progress,
                              card={"classifier": args.classifier, "base_generator": args.generator,
                                    "reference": args.reference, "command": current_command()})
    summary = _atgan_eval(g_adv, original, args, out, loaded)
    return finish(summary, f"{args.out}/generator.safetensors, summary.json, grid.png")


def run_atgan_critic(args: argparse.Namespace) -> int:
    from alva.models import load_generator
    from alva.training.atgan import SHIPPED_CRITIC, ATGANSettings, load_critic, train_against_critic
    from alva.training.classifier import current_command

    args.critic = args.critic or str(SHIPPED_CRITIC)
    if not Path(args.critic).exists():
        raise FileNotFoundError(f"no critic checkpoint at {args.critic}: train one with alva gan train --out DIR "
                                "and pass --critic DIR/checkpoint.safetensors")
    settings = settings_from(ATGANSettings, args, steps_per_epoch=args.steps, dist_weight=0.0)
    loaded = _atgan_inputs(args, None)
    critic = load_critic(args.critic).to(args.device)
    out = claim(args, {"--classifier": loaded[1], "--oracle": loaded[2], "--critic": critic})
    g, _ = train_against_critic(critic, loaded[1], settings, adv_weight=args.adv_weight, out=out, resume=args.resume,
                                device=args.device, progress=not args.no_progress,
                                card={"classifier": args.classifier, "critic": args.critic,
                                      "command": current_command()})
    summary = _atgan_eval(g, load_generator("mnist/acwgan-gp", device=args.device), args, out, loaded)
    return finish(summary, f"{args.out}/generator.safetensors, summary.json, grid.png")
