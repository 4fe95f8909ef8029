"""``alva detect``: train a detector of adversarial inputs on one attack and measure its ROC AUC on that
attack and on attacks it never saw, plus an adaptive attack that targets classifier and detector jointly."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from alva.attacks import FGSM, PGD, SparseConfident
from alva.attacks.alva import ALVA
from alva.cli.common import add_common, add_numbers, paragraph, recorded
from alva.cli.inputs import (
    EPS_HELP,
    add_data_options,
    add_model_options,
    default_eps,
    fraction,
    fractions,
    load_splits,
    subset,
)
from alva.cli.model_inputs import (
    add_generator_options,
    check_generator_fits,
    generator_images,
    load_user_generator,
    mnist_default,
)
from alva.cli.run_folder import claim
from alva.cli.sparse_cmd import max_pixels
from alva.defenses import (
    DetectedModel,
    DetectorAwareLoss,
    detection_auc,
    detector_scores,
    detector_threshold,
    train_detector,
)
from alva.evaluation.robustness import run_attack
from alva.models import build
from alva.models.generative import draw_labels, draw_noise, is_conditional
from alva.tracking import atomic_write_bytes, atomic_write_json
from alva.training.loop import TrainSettings

__all__ = ["register", "run"]

TRAIN_ATTACKS = ("fgsm", "pgd")

DESCRIPTION = paragraph("""
Train a binary detector on clean training images of --data and their adversarial versions from --train-attack,
then report its ROC AUC on test images for that attack (seen) and for PGD, sparse confident images, ALVA images
(with a generator of the data's images) and an adaptive PGD that also targets the detector (unseen). Writes
summary.json and table.md to --out.
""")


def register(commands) -> None:
    p = commands.add_parser("detect", help="train a detector of adversarial inputs and tabulate its AUC",
                            description=DESCRIPTION)
    add_model_options(p)
    add_data_options(p, splits=True)
    p.add_argument("--train-attack", default="fgsm", choices=TRAIN_ATTACKS)
    p.add_argument("--eps", type=fraction, default=None, help=f"L-inf radius of FGSM/PGD, e.g. 8/255 ({EPS_HELP})")
    p.add_argument("--steps", type=int, default=40, help="PGD and adaptive PGD steps")
    p.add_argument("--train-size", type=int, default=5000, help="clean training images (as many adversarial)")
    add_numbers(p, epochs=3)
    p.add_argument("--architecture", default="cnn-small",
                   help="detector: an architecture of alva.models.create or FILE.py:FUNCTION with one output, built "
                        "for the data's images")
    p.add_argument("--n", type=int, default=1000, help="clean test images")
    p.add_argument("--n-sparse", type=int, default=200, help="sparse confident images")
    add_numbers(p, sparse_steps=500)
    p.add_argument("--n-alva", type=int, default=500, help="ALVA latent vectors")
    add_generator_options(p, None, "default: mnist/acwgan-gp for 1x28x28 data, none (no ALVA row) for other data; "
                                   "'none' skips the row")
    add_numbers(p, alva_eps=0.5, alva_steps=1)
    p.add_argument("--advgan", default=None,
                   help="a trained untargeted perturbation generator (run folder or .safetensors of "
                        "alva.training.advgan) for an AdvGAN row (unseen generator attack)")
    p.add_argument("--c", type=fractions, default=[1.0],
                   help="adaptive attack: weight(s) of the detector logit, comma-separated (one row each)")
    p.add_argument("--adaptive", default="hinge", choices=["hinge", "plain", "both"],
                   help="adaptive loss: hinge = min(margin, 2) - c * max(detector - threshold + 1, 0); plain = "
                        "CE - c * detector logit")
    p.add_argument("--fpr", type=float, default=0.05, help="flagging threshold: this fraction of clean test "
                                                            "images is flagged")
    add_numbers(p, batch_size=500, seed=0)
    add_common(p, run, out="output folder")


def _attack(name: str, model: torch.nn.Module, args: argparse.Namespace):
    if name == "fgsm":
        return FGSM(model, eps=args.eps, seed=args.seed)
    return PGD(model, eps=args.eps, steps=args.steps, seed=args.seed)


def _row(name: str, seen: bool, detector, clean, adv, fooled: torch.Tensor, threshold: float,
         note: str = "") -> dict[str, Any]:
    flagged = detector_scores(detector, adv) >= threshold
    return {"attack": name, "seen": seen, "n": len(adv), "auc": detection_auc(detector, clean, adv),
            "attack_success": fooled.float().mean().item(), "detected": flagged.float().mean().item(),
            "fooled_and_undetected": (fooled & ~flagged).float().mean().item(), "note": note}


def run(args: argparse.Namespace) -> int:
    progress = not args.no_progress
    test_data, train_data, model = load_splits(args)
    args.eps = args.eps if args.eps is not None else default_eps(test_data)
    args.generator = mnist_default(args.generator, test_data, "mnist/acwgan-gp")
    generator = None
    if args.generator is not None:
        generator = load_user_generator(args.generator, kwargs=args.generator_kwargs, device=args.device)
        check_generator_fits(generator_images(generator, args.generator), test_data, f"--model {args.model}")
    advgan = None
    if args.advgan:
        from alva.attacks.generator_attacks import load_perturbation_generator

        advgan = load_perturbation_generator(args.advgan, device=args.device)
        if advgan.channels != test_data.shape[0]:
            raise ValueError(f"--advgan {args.advgan} perturbs {advgan.channels}-channel images but {args.data} has "
                             f"{test_data.shape[0]} channels")
    build(args.architecture, in_shape=test_data.shape, num_classes=1)  # a detector of the images can be built
    bs, dev = args.batch_size, args.device
    x_train, y_train = subset(train_data, args.train_size, args.seed)
    x_test, y_test = subset(test_data, args.n, args.seed)
    out = claim(args, {"--model": model, "training data": (x_train, y_train), "test data": (x_test, y_test)})

    started = time.perf_counter()
    adv_train = run_attack(_attack(args.train_attack, model, args), x_train, y_train, batch_size=bs, device=dev,
                           progress=progress, desc=f"{args.train_attack} (training set)").x_adv
    adv_test = {name: run_attack(_attack(name, model, args), x_test, y_test, batch_size=bs, device=dev,
                                 progress=progress, desc=name) for name in ("fgsm", "pgd")}
    settings = TrainSettings(epochs=args.epochs, seed=args.seed)
    detector = train_detector(x_train, adv_train, architecture=args.architecture, settings=settings,
                              eval_data=(x_test, adv_test[args.train_attack].x_adv), out=out / "detector",
                              progress=progress, device=dev)
    train_s = time.perf_counter() - started
    threshold = detector_threshold(detector, x_test, args.fpr)

    rows = [_row(name, name == args.train_attack, detector, x_test, r.x_adv, r.success, threshold)
            for name, r in adv_test.items()]

    # Sparse confident images (from blank images, 20 per class by default) against clean test images.
    sparse = SparseConfident(model, steps=args.sparse_steps, max_pixels=max_pixels(None, test_data.shape),
                             seed=args.seed)
    targets = torch.arange(args.n_sparse) % test_data.num_classes
    rs = run_attack(sparse, torch.zeros(args.n_sparse, *x_test.shape[1:]), targets, batch_size=bs, device=dev,
                    progress=progress, desc="sparse")
    # run_attack passes the classes as y: the images are generated for them (untargeted call = y as classes).
    rows.append(_row("sparse", False, detector, x_test, rs.x_adv, rs.success, threshold,
                     f"SparseConfident images vs clean test images; success: p >= 0.9 with <= "
                     f"{sparse.max_pixels} pixels"))

    if generator is not None:  # ALVA: G(z') against G(z) for the conditional generator.
        z = draw_noise(generator, args.n_alva, seed=args.seed)
        yz = draw_labels(generator, args.n_alva, seed=args.seed + 1) if is_conditional(generator) else None
        ra = ALVA(generator, model, eps=args.alva_eps, steps=args.alva_steps, seed=args.seed)(z, yz)
        if ra.x is None:
            raise RuntimeError("an ALVA result holds G(z)")
        rows.append(_row("alva", False, detector, ra.x.cpu(), ra.x_adv.cpu(), ra.success.cpu(), threshold,
                         f"G(z') vs G(z), latent eps {args.alva_eps}, {args.alva_steps} step(s)"))

    if advgan is not None:
        from alva.attacks.generator_attacks import AdvGANAttack

        gen_attack = AdvGANAttack(model, advgan, eps=args.eps)
        rg = run_attack(gen_attack, x_test, y_test, batch_size=bs, device=dev, progress=progress, desc="advgan")
        rows.append(_row("advgan", False, detector, x_test, rg.x_adv, rg.success, threshold,
                         f"AdvGAN perturbation generator {args.advgan}, eps {args.eps}"))

    # Adaptive: PGD on a loss that fools the classifier and keeps the detector below its threshold.
    kinds = ["hinge", "plain"] if args.adaptive == "both" else [args.adaptive]
    for kind, c in ((k, c) for k in kinds for c in args.c):
        loss = (DetectorAwareLoss(c=c, threshold=threshold) if kind == "hinge"
                else DetectorAwareLoss(c=c, threshold=threshold, base="ce", hinge=False))
        adaptive = PGD(DetectedModel(model, detector), eps=args.eps, steps=args.steps, loss=loss, seed=args.seed)
        rd = run_attack(adaptive, x_test, y_test, batch_size=bs, device=dev, progress=progress, desc="adaptive")
        fooled = loss.fooled(rd.adv_logits, y_test, None)
        what = ("min(margin, 2) - c * max(detector - threshold + 1, 0)" if kind == "hinge"
                else "CE - c * detector logit")
        rows.append(_row(f"adaptive-pgd {kind} c={c:g}", False, detector, x_test, rd.x_adv, fooled, threshold,
                         f"PGD-{args.steps} on {what}, white-box on classifier and detector"))

    summary = {"settings": recorded(args),
               "threshold": threshold, "detector_train_s": round(train_s, 2), "rows": rows}
    atomic_write_json(out / "summary.json", summary, kind="detector-summary")
    table = format_table(rows, args)
    atomic_write_bytes(out / "table.md", table.encode())
    print(table)
    print(f"wrote {out}/summary.json, {out}/table.md")
    return 0


def format_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"Detector trained on {args.train_attack} (eps {args.eps}) against {args.model}; "
             f"detected = flagged at {args.fpr:.0%} false positives on clean test images.", "",
             "| attack | seen | AUC | attack success | detected | fooled and undetected |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attack']} | {'seen' if r['seen'] else 'unseen'} | {r['auc']:.3f} | "
                     f"{r['attack_success']:.3f} | {r['detected']:.3f} | {r['fooled_and_undetected']:.3f} |")
    return "\n".join(lines) + "\n"
