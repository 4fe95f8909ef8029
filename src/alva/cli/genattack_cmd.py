"""``alva advgan train|attack|figure`` (AdvGAN perturbation generators) and ``alva atgan finetune|critic``
(adversarial conditional generators for unrestricted adversarial examples)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from alva.cli.common import add_common
from alva.data import fixed_subset, load_mnist
from alva.tracking.files import atomic_write_json


def register(commands) -> None:
    p = commands.add_parser("advgan", help="AdvGAN: train a perturbation generator, attack with it")
    sub = p.add_subparsers(dest="advgan_command", required=True, metavar="ACTION")
    t = sub.add_parser("train", help="train a perturbation generator against a classifier",
                       description="Train an AdvGAN perturbation generator (Xiao et al. 2018) against --model; "
                                   "checkpoint after every epoch (--resume goes on), metrics.jsonl, "
                                   "samples/epoch_NNN.png, generator.safetensors, then evaluate on test images "
                                   "(summary.json, grid.png).")
    t.add_argument("--model", default="mnist/cnn-small", help="the classifier under attack")
    t.add_argument("--eps", type=float, default=0.3, help="L-inf bound")
    t.add_argument("--epochs", type=int, default=2)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--gan-weight", type=float, default=0.1)
    t.add_argument("--hinge-weight", type=float, default=0.05)
    t.add_argument("--hinge-bound", type=float, default=3.0, help="L2 size above which the hinge term acts")
    t.add_argument("--width", type=int, default=32, help="generator width (cost grows with its square)")
    t.add_argument("--targeted", action="store_true", help="train a targeted generator (random targets)")
    t.add_argument("--train-size", type=int, default=10000, help="training images (fixed stratified subset)")
    t.add_argument("--seed", type=int, default=0)
    _add_eval(t)
    t.add_argument("--resume", action="store_true")
    t.add_argument("--out", required=True)
    add_common(t)
    t.set_defaults(handler=run_advgan_train)

    a = sub.add_parser("attack", help="attack test images with a trained perturbation generator")
    a.add_argument("--model", default="mnist/cnn-small", help="the classifier under attack")
    a.add_argument("--generator", required=True, help="run folder or generator.safetensors of advgan train")
    a.add_argument("--eps", type=float, default=None, help="default: the generator's eps")
    a.add_argument("--target", default=None, choices=["random", "least-likely"], help="for a targeted generator")
    _add_eval(a)
    a.add_argument("--out", required=True)
    add_common(a)
    a.set_defaults(handler=run_advgan_attack)

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
    ft.add_argument("--generator", default="mnist/acwgan-gp")
    ft.add_argument("--distance", default="l2", choices=["l2", "frechet"])
    ft.add_argument("--dist-weight", type=float, default=None, help="default: 0.5 for l2, 0.01 for frechet")
    ft.add_argument("--reference", default="mnist/cnn-small-fast", help="classifier whose features frechet uses")
    ft.add_argument("--critic", default=None, help="train_gan checkpoint whose critic keeps images realistic")
    ft.add_argument("--critic-weight", type=float, default=0.0)
    _add_atgan(ft)
    ft.set_defaults(handler=run_atgan_finetune)

    cr = gsub.add_parser("critic", help="train a fresh generator against a frozen, trained critic and the classifier",
                         description="Train a fresh conditional generator against a frozen AC-WGAN-GP critic (its "
                                     "Wasserstein score and auxiliary classifier; the critic never trains) and the "
                                     "C&W margin on --classifier, then measure success, oracle validity and "
                                     "Frechet distance to real test images.")
    cr.add_argument("--critic", default=None,
                    help="train_gan checkpoint holding the trained critic (default: the critic shipped with "
                         "mnist/acwgan-gp)")
    cr.add_argument("--adv-weight", type=float, default=1.0)
    _add_atgan(cr)
    cr.set_defaults(handler=run_atgan_critic)


def _add_eval(p: argparse.ArgumentParser) -> None:
    p.add_argument("--oracle", default="mnist/mlp", help="independent classifier that judges validity")
    p.add_argument("--n-eval", type=int, default=1000, help="test images to attack (fixed stratified subset)")


def _add_atgan(p: argparse.ArgumentParser) -> None:
    p.add_argument("--classifier", default="mnist/cnn-small", help="the model under attack")
    p.add_argument("--oracle", default="mnist/mlp")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=200, help="generator steps per epoch")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-eval", type=int, default=2000, help="samples to measure")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--out", required=True)
    add_common(p)


def throughput(fn, n: int, repeats: int = 3) -> float:
    """Images per second of ``fn()`` on ``n`` images: the best of ``repeats`` timed calls."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return n / best


def _advgan_eval(model, generator, args, out: Path, eps, target) -> dict:
    from alva.attacks.generator_attacks import AdvGANAttack, advgan_summary
    from alva.evaluation.robustness import Batch
    from alva.models import load
    from alva.report.figures import adversarial_grid

    x, y = fixed_subset(*load_mnist("test", args.data_root), args.n_eval, seed=0)
    x, y = x.to(args.device), y.to(args.device)
    oracle = load(args.oracle, device=args.device) if args.oracle != "none" else None
    attack = AdvGANAttack(model, generator, eps, target=target, seed=0)
    result = attack(x, y)
    summary = {"model": args.model, "eps": attack.eps, "oracle": args.oracle, **advgan_summary(result, x, y, oracle),
               "images_per_s": throughput(lambda: attack(x, y), len(x))}
    probs = result.adv_logits.softmax(1)
    batch = Batch(x.cpu(), result.x_adv.cpu(), y.cpu(), result.clean_logits.argmax(1).cpu(), result.adv_pred.cpu(),
                  probs.amax(1).cpu(), result.success.cpu())
    adversarial_grid(out / "grid.png", batch, title=f"AdvGAN eps={attack.eps} vs {args.model}: success "
                     f"{summary['success']:.1%}, oracle validity {summary.get('validity', float('nan')):.1%}")
    atomic_write_json(out / "summary.json", summary, kind="advgan-summary")
    return summary


def run_advgan_train(args: argparse.Namespace) -> int:
    from alva.models import load
    from alva.training.advgan import AdvGANSettings, train_advgan
    from alva.training.classifier import current_command

    settings = AdvGANSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, gan_weight=args.gan_weight,
                              hinge_weight=args.hinge_weight, hinge_bound=args.hinge_bound, targeted=args.targeted,
                              width=args.width, seed=args.seed)
    model = load(args.model, device=args.device)
    data = fixed_subset(*load_mnist("train", args.data_root), args.train_size, seed=args.seed)
    generator, _ = train_advgan(model, data, args.eps, settings, out=args.out, resume=args.resume, device=args.device,
                                progress=not args.no_progress,
                                card={"target_model": args.model, "command": current_command()})
    summary = _advgan_eval(model, generator, args, Path(args.out), args.eps, "random" if args.targeted else None)
    print(_line(summary))
    print(f"wrote {args.out}/generator.safetensors, summary.json, grid.png")
    return 0


def run_advgan_attack(args: argparse.Namespace) -> int:
    from alva.attacks.generator_attacks import load_perturbation_generator
    from alva.models import load

    generator = load_perturbation_generator(args.generator, device=args.device)
    model = load(args.model, device=args.device)
    summary = _advgan_eval(model, generator, args, Path(args.out), args.eps, args.target)
    print(_line(summary))
    print(f"wrote {args.out}/summary.json, grid.png")
    return 0


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


def _atgan_eval(g_adv, original, args, out: Path) -> dict:
    from alva.attacks.generator_attacks import UnrestrictedGeneratorAttack, generator_attack_summary
    from alva.evaluation.generative import generator_frechet
    from alva.evaluation.robustness import Batch
    from alva.models import load
    from alva.report.figures import adversarial_grid

    classifier, oracle = load(args.classifier, device=args.device), load(args.oracle, device=args.device)
    attack = UnrestrictedGeneratorAttack(g_adv, classifier, oracle=oracle, reference=original)
    result = attack.sample(args.n_eval, seed=10_000)
    real = load_mnist("test", args.data_root)[0][:args.n_eval]
    summary = {"classifier": args.classifier, "oracle": args.oracle, **generator_attack_summary(result),
               "frechet_to_real_adv": generator_frechet(g_adv, oracle, real, args.n_eval, seed=10_000),
               "frechet_of": f"Frechet distance on {args.oracle} penultimate features to {args.n_eval} real test "
                             "images",
               "images_per_s": throughput(lambda: attack.sample(args.n_eval, seed=10_000), args.n_eval)}
    if original is not None:
        summary["frechet_to_real_original"] = generator_frechet(original, oracle, real, args.n_eval, seed=10_000)
        with torch.no_grad():
            summary["original_success"] = (classifier(result.x).argmax(1) != result.y).float().mean().item()
            summary["original_validity"] = (oracle(result.x).argmax(1) == result.y).float().mean().item()
    if result.y is None or result.oracle_pred is None:
        raise RuntimeError("a generator attack with an oracle gives the classes and the oracle's labels")
    with torch.no_grad():
        clean = classifier(result.x).argmax(1) if result.x is not None else result.y
    probs = result.adv_logits.softmax(1)
    x = result.x if result.x is not None else result.x_adv
    batch = Batch(x.cpu(), result.x_adv.cpu(), result.y.cpu(), clean.cpu(), result.adv_logits.argmax(1).cpu(),
                  probs.amax(1).cpu(), result.success.cpu())
    notes = [f"oracle={int(p)}" for p in result.oracle_pred.tolist()]
    adversarial_grid(out / "grid.png", batch, notes=notes,
                     title=f"{g_adv.card.get('method')} vs {args.classifier}: top G(z,y), middle G_adv(z,y); "
                           f"success {summary['success']:.1%}, validity {summary['validity']:.1%}")
    atomic_write_json(out / "summary.json", summary, kind="generator-attack-summary")
    return summary


def _atgan_settings(args, distance: str, dist_weight: float, critic_weight: float):
    from alva.training.atgan import ATGANSettings

    return ATGANSettings(epochs=args.epochs, steps_per_epoch=args.steps, batch_size=args.batch_size, lr=args.lr,
                         distance=distance, dist_weight=dist_weight, critic_weight=critic_weight, seed=args.seed)


def run_atgan_finetune(args: argparse.Namespace) -> int:
    from alva.models import load, load_generator
    from alva.training.atgan import finetune_atgan, load_critic
    from alva.training.classifier import current_command

    weight = args.dist_weight if args.dist_weight is not None else {"l2": 0.5, "frechet": 0.01}[args.distance]
    settings = _atgan_settings(args, args.distance, weight, args.critic_weight)
    original = load_generator(args.generator, device=args.device)
    critic = load_critic(args.critic).to(args.device) if args.critic else None
    g_adv, _ = finetune_atgan(original, load(args.classifier, device=args.device), settings,
                              reference=load(args.reference, device=args.device), critic=critic, out=args.out,
                              resume=args.resume, device=args.device, progress=not args.no_progress,
                              card={"classifier": args.classifier, "base_generator": args.generator,
                                    "reference": args.reference, "command": current_command()})
    summary = _atgan_eval(g_adv, original, args, Path(args.out))
    print(_line(summary))
    print(f"wrote {args.out}/generator.safetensors, summary.json, grid.png")
    return 0


def run_atgan_critic(args: argparse.Namespace) -> int:
    from alva.models import load, load_generator
    from alva.training.atgan import SHIPPED_CRITIC, load_critic, train_against_critic
    from alva.training.classifier import current_command

    args.critic = args.critic or str(SHIPPED_CRITIC)
    if not Path(args.critic).exists():
        raise FileNotFoundError(f"no critic checkpoint at {args.critic}: train one with alva gan train --out DIR "
                                "and pass --critic DIR/checkpoint.safetensors")
    settings = _atgan_settings(args, "l2", 0.0, 0.0)
    g, _ = train_against_critic(load_critic(args.critic).to(args.device), load(args.classifier, device=args.device),
                                settings, adv_weight=args.adv_weight, out=args.out, resume=args.resume,
                                device=args.device, progress=not args.no_progress,
                                card={"classifier": args.classifier, "critic": args.critic,
                                      "command": current_command()})
    summary = _atgan_eval(g, load_generator("mnist/acwgan-gp", device=args.device), args, Path(args.out))
    print(_line(summary))
    print(f"wrote {args.out}/generator.safetensors, summary.json, grid.png")
    return 0


def _line(summary: dict) -> str:
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items())
