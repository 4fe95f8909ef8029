"""``alva attack-label``: attack one label of a multi-label model, naive PGD beside the single-label attack."""

from __future__ import annotations

import argparse
from typing import Any

import alva.data
from alva.attacks import PGD
from alva.attacks.multilabel import NaiveBCE, SingleLabelFlip
from alva.cli.common import add_common, add_numbers, paragraph
from alva.cli.inputs import add_data_options, add_model_options, fractions, load_data, load_model, subset
from alva.cli.run_folder import claim
from alva.evaluation.label_flips import attack_one_label, flip_curves
from alva.report import eps_curve_plot
from alva.tracking import atomic_write_json

COLUMNS = ("success", "collateral", "hamming", "only_target", "positives_turned_off")
DESCRIPTION = paragraph("""
For each eps: naive PGD (maximise the BCE of all labels) and the single-label attack (flip one label, hold the
others) on multi-label images of --data (default: generated multi-label MNIST test images, --n of them). Writes
summary.json and flips.png.
""")


def register(commands) -> None:
    p = commands.add_parser("attack-label", help="attack one label of a multi-label model", description=DESCRIPTION)
    add_model_options(p, default="mnist-multilabel/cnn-gmp")
    add_data_options(p, default="mnist-multilabel")
    p.add_argument("--eps", type=fractions, default=[0.05, 0.1, 0.2, 0.3],
                   help="comma-separated eps values, each a number or a fraction (8/255)")
    add_numbers(p, steps=40)
    p.add_argument("--target", default="positive", choices=["positive", "negative", "random"],
                   help="which label to flip: one that is on, off, or any")
    p.add_argument("--hold", type=float, default=1.0, help="weight of holding the other labels")
    p.add_argument("--n", type=int, default=500, help="test images (generated ones for mnist-multilabel)")
    add_numbers(p, seed=0)
    add_common(p, run, out="output folder")


def run(args: argparse.Namespace) -> int:
    if args.data == "mnist-multilabel":  # generated: exactly --n images of --seed
        data = alva.data.load(args.data, args.split, resize=args.resize, root=args.data_root, data_seed=args.seed,
                              count=args.n)
    else:
        data = load_data(args)
    if data.task != "multilabel":
        raise ValueError(f"attack-label needs multi-label data (multi-hot labels); {args.data} has one class per "
                         "image")
    model = load_model(args, data)
    x, _ = subset(data, args.n, args.seed)
    x = x.to(args.device)
    out = claim(args, {"--model": model, "data": x})
    rows: list[dict[str, Any]] = []
    for eps in args.eps:
        for name, loss, early_stop in (("naive PGD", NaiveBCE(), False),
                                       ("single-label", SingleLabelFlip(args.hold), True)):
            attack = PGD(model, eps=eps, steps=args.steps, loss=loss, target=args.target, early_stop=early_stop,
                         seed=args.seed)
            rows.append({"attack": name, "eps": eps, **attack_one_label(attack, x)})
            print(format_row(rows[-1]), flush=True)
    atomic_write_json(out / "summary.json", {"model": args.model, "target": args.target, "steps": args.steps,
                                             "n": args.n, "rows": rows}, kind="label-flip-summary")
    eps_curve_plot(out / "flips.png", flip_curves(rows, ("success", "positives_turned_off")), metric="rate",
                   title=f"{args.model}: flip label ({args.target})")
    print(f"wrote {out}/summary.json, {out}/flips.png")
    return 0


def format_row(row: dict[str, Any]) -> str:
    return f"{row['attack']:13s} eps {row['eps']:.2f}  " + "  ".join(f"{k} {row[k]:.3f}" for k in COLUMNS)
