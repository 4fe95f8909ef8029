"""``alva attack``: attack a classifier on a fixed subset of a data set; write a summary, an image grid and the
eps curve (for a minimum-norm attack: read from one run's distances)."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from alva import distributed
from alva.attacks import Attack, MinimumNormAttack
from alva.attacks.norms import NORMS
from alva.attacks.registry import REGISTRY, build, describe
from alva.cli.common import add_common
from alva.cli.inputs import (
    EPS_HELP,
    add_data_options,
    add_model_options,
    default_eps,
    fraction,
    load_data,
    load_model,
    samples,
)
from alva.cli.run_folder import claim
from alva.evaluation import MinimumNormFigures, attack_figures, eps_curve, evaluate_attack, report_from
from alva.evaluation.minimum_norm import minimum_norm_name
from alva.report import adversarial_grid, distance_curve_plot, eps_curve_plot
from alva.tracking import atomic_write_json

DEFAULT_CURVE = {"linf": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3], "l2": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0],
                 "l1": [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0], "l0": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]}
RGB_CURVE = {"linf": [0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 12 / 255, 16 / 255],
             "l2": [0.0, 0.125, 0.25, 0.5, 0.75, 1.0, 1.5], "l1": [0.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0],
             "l0": [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0]}
MINIMUM_NORM_HELP = ("A minimum-norm attack (cw, ddn and the others marked minimum-norm in --list) finds each sample's "
                     "smallest adversarial perturbation: one run gives the robust accuracy at every eps, so its eps "
                     "curve (the --curve values, plus --eps when given) is read from the distances without running "
                     "the attack again; summary.json then holds the median and mean distance, the curve and every "
                     "sample's distance, and distance_curve.png the robust accuracy against eps. --eps is passed to "
                     "such an attack only when given and only if the attack takes an eps (success then also needs "
                     "the distance to be at most eps).")


def register(commands) -> None:
    p = commands.add_parser("attack", help="attack a classifier and write results and pictures",
                            description="Attack a model on a fixed stratified subset of --data (default: the MNIST "
                                        "test split). Writes summary.json, grid.png and eps_curve.png to --out. "
                                        "Every attack of the registry is reachable; --list prints them with their "
                                        "options. " + MINIMUM_NORM_HELP)
    add_data_options(p)
    add_model_options(p)
    p.add_argument("--attack", default="pgd", choices=sorted(REGISTRY))
    p.add_argument("--list", action="store_true", help="print the attacks, their options and defaults, and exit")
    p.add_argument("--eps", type=fraction, default=None,
                   help=f"radius, e.g. 8/255 ({EPS_HELP}); for a minimum-norm attack: an eps to read the robust "
                        "accuracy at (added to the curve), and its eps if it takes one (no default)")
    p.add_argument("--norm", default=None, choices=sorted(NORMS),
                   help="the threat model (default: the attack's own, linf for the eps-ball attacks)")
    p.add_argument("--steps", type=int, default=None, help="gradient steps (default: the attack's, 40 for pgd)")
    p.add_argument("--alpha", type=fraction, default=None, help="PGD step size (default 2.5 * eps / steps)")
    p.add_argument("--restarts", type=int, default=None, help="restarts (default: the attack's, 1)")
    p.add_argument("--no-random-start", action="store_true")
    p.add_argument("--loss", default=None, choices=["ce", "margin", "dlr"],
                   help="the attack's loss (default: the attack's, ce for fgsm and pgd)")
    p.add_argument("--target", default=None, choices=["random", "least-likely"], help="make the attack targeted")
    p.add_argument("--early-stop", action="store_true", help="stop on each sample once it succeeds")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other option of the attack (see --list), e.g. --option n_queries=1000")
    p.add_argument("--n", type=int, default=1000, help="number of test images (fixed stratified subset)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--curve", type=fractions, default=None,
                   help="comma-separated eps values for the eps curve, e.g. 0,4/255,8/255 (default: 7 values; on "
                        "1-channel data up to 0.3 for linf, 3 for l2, 15 for l1, 32 pixels for l0; on RGB data up to "
                        "16/255 for linf, 1.5 for l2, 16 for l1); for a minimum-norm attack, read from its distances")
    p.add_argument("--no-curve", action="store_true",
                   help="skip the eps curve (a minimum-norm attack's curve costs nothing and is always written)")
    p.add_argument("--out", default=None, help="output folder (required unless --list)")
    add_common(p, run_folder=True)
    p.set_defaults(handler=run)


def fractions(text: str) -> list[float]:
    """argparse type of a comma-separated list of budgets such as ``0,4/255,8/255``."""
    return [fraction(item) for item in text.split(",") if item.strip()]


ATTACK_FLAGS = {"norm": "--norm", "steps": "--steps", "alpha": "--alpha", "restarts": "--restarts",
                "random_start": "--no-random-start", "loss": "--loss", "target": "--target",
                "early_stop": "--early-stop"}


def refuse_foreign_flags(args: argparse.Namespace) -> None:
    """Refuse a flag given for a setting ``args.attack`` does not have (it would be silently ignored)."""
    names = {o.name for o in REGISTRY[args.attack].options}
    given = {"norm": args.norm, "steps": args.steps, "alpha": args.alpha, "restarts": args.restarts,
             "random_start": args.no_random_start or None, "loss": args.loss, "target": args.target,
             "early_stop": args.early_stop or None}
    foreign = [ATTACK_FLAGS[k] for k, v in given.items() if v is not None and k not in names]
    if foreign:
        raise ValueError(f"{', '.join(foreign)}: not a setting of --attack {args.attack} (alva attack --list shows "
                         "the settings of each attack)")


def attack_settings(args: argparse.Namespace, eps: float) -> dict[str, Any]:
    """The settings of ``args.attack`` from the command line: the flags it has an option for, then --option."""
    spec = REGISTRY[args.attack]
    names = {o.name for o in spec.options}
    given = {"eps": eps, "norm": args.norm, "steps": args.steps, "alpha": args.alpha, "restarts": args.restarts,
             "random_start": False if args.no_random_start else None, "loss": args.loss, "target": args.target,
             "early_stop": True if args.early_stop else None, "seed": args.seed}
    settings = {k: v for k, v in given.items() if k in names and v is not None}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option takes NAME=VALUE, got {item!r}")
        settings[name] = spec.option(name).parse(value)
    return settings


def own_norm(attack: str) -> str:
    """The default norm of the registered ``attack`` (linf where it has no norm option)."""
    spec = REGISTRY[attack]
    return next((str(o.default) for o in spec.options if o.name == "norm"), "linf")


def build_attack(model: torch.nn.Module, args: argparse.Namespace, eps: float) -> Attack:
    return build(args.attack, model, **attack_settings(args, eps))


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(describe())
        return 0
    if args.out is None:
        raise ValueError("--out is required: the folder for summary.json and the pictures")
    refuse_foreign_flags(args)
    args.device = distributed.init_from_env(args.device)  # under torchrun: each process attacks its share
    data = load_data(args)
    if data.task != "multiclass":
        raise ValueError(f"alva attack needs class labels; {args.data!r} has multi-hot labels (use alva attack-label)")
    model = load_model(args, data)
    if args.norm is None:
        args.norm = own_norm(args.attack)
    if issubclass(REGISTRY[args.attack].cls, MinimumNormAttack):
        return run_minimum_norm(args, data, model)
    args.eps = default_eps(data) if args.eps is None else args.eps
    attack = build_attack(model, args, args.eps)  # bad settings fail before anything is written
    x, y = samples(data, args.n, args.seed)  # tensors, or a streamed set read batch by batch
    main = distributed.is_main()
    out = claim(args, {"--model": model, "data": x if y is None else (x, y)})
    progress = not args.no_progress and main
    report, batch = evaluate_attack(attack, x, y, name=args.attack,
                                    batch_size=args.batch_size, device=args.device, progress=progress)
    summary: dict[str, Any] = {"model": args.model, "settings": {k: v for k, v in vars(args).items()
                                                                 if k not in ("handler", "func")},
                               "report": report.to_dict()}
    title = f"{args.attack.upper()} {args.norm} eps={args.eps:.4g} on {args.model}"
    if main:
        adversarial_grid(out / "grid.png", batch, title=title)
    has_eps = any(o.name == "eps" for o in REGISTRY[args.attack].options)
    if not args.no_curve and has_eps:
        values = args.curve or (DEFAULT_CURVE if data.shape[0] == 1 else RGB_CURVE)[args.norm]
        curve = eps_curve(lambda e: build_attack(model, args, e), values, x, y, batch_size=args.batch_size,
                          device=args.device, progress=progress)
        summary["eps_curve"] = curve
        if main:
            eps_curve_plot(out / "eps_curve.png", {f"{args.attack} ({args.norm})": curve}, title=args.model)
    if not main:
        return 0
    atomic_write_json(out / "summary.json", summary, kind="attack-summary")
    print(format_report(report))
    curve_file = "" if args.no_curve or not has_eps else f", {out}/eps_curve.png"
    print(f"wrote {out}/summary.json, {out}/grid.png" + curve_file)
    return 0


def minimum_norm_curve_values(args: argparse.Namespace, norm: str, channels: int) -> list[float]:
    """The eps values of a minimum-norm attack's curve: --curve, else the defaults of ``norm``; plus --eps."""
    values = list(args.curve or (DEFAULT_CURVE if channels == 1 else RGB_CURVE)[norm])
    if args.eps is not None and args.eps not in values:
        values = sorted([*values, args.eps])
    return values


def run_minimum_norm(args: argparse.Namespace, data, model: torch.nn.Module) -> int:
    """``alva attack`` with a minimum-norm attack: one run, the curve and the distance figures from its distances."""
    attack = build_attack(model, args, args.eps)  # eps only when given; bad settings fail before anything is written
    norm = args.norm = minimum_norm_name(attack) or args.norm  # the recorded settings name the attack's norm
    values = minimum_norm_curve_values(args, norm, data.shape[0])
    x, y = samples(data, args.n, args.seed)
    main = distributed.is_main()
    out = claim(args, {"--model": model, "data": x if y is None else (x, y)})
    progress = not args.no_progress and main
    per_sample, batch = attack_figures(attack, x, y, name=args.attack, batch_size=args.batch_size,
                                       device=args.device, progress=progress)
    report = report_from(args.attack, per_sample, norm=norm, eps_values=values)
    if not main:
        return 0
    figures = report.minimum_norm or {}
    distances = per_sample.distance.tolist() if isinstance(per_sample, MinimumNormFigures) else []
    summary: dict[str, Any] = {"model": args.model, "settings": {k: v for k, v in vars(args).items()
                                                                 if k not in ("handler", "func")},
                               "report": report.to_dict(), "eps_curve": figures.get("curve", []),
                               "distances": distances}
    title = f"{args.attack.upper()} ({norm} minimum-norm) on {args.model}"
    adversarial_grid(out / "grid.png", batch, title=title)
    distance_curve_plot(out / "distance_curve.png", {args.attack: distances}, norm=norm, marks=values,
                        title=args.model)
    atomic_write_json(out / "summary.json", summary, kind="attack-summary")
    print(format_report(report))
    print(f"wrote {out}/summary.json, {out}/grid.png, {out}/distance_curve.png")
    return 0


def format_minimum_norm(figures: dict[str, Any]) -> list[str]:
    """The lines of a minimum-norm attack's figures: the distances, then the robust accuracy at each eps."""
    return [
        f"  minimum-norm ({figures['norm']}): success {figures['success_rate']:.4f}  median distance "
        f"{figures['median']:.4g}  mean {figures['mean']:.4g}  (successful perturbations of correctly classified "
        "images)",
        "  robust acc at eps: " + "  ".join(f"{p['eps']:.4g}:{p['robust_acc']:.4f}" for p in figures["curve"]),
    ]


def format_report(report) -> str:
    lines = [
        f"{report.attack}: n={report.n}  clean acc {report.clean_acc:.4f}  robust acc {report.robust_acc:.4f}  "
        f"success {report.success_rate:.4f}  adv error {report.adv_error:.4f}",
        f"  confidence on misclassified {report.confidence_misclassified:.4f}  "
        f"mean |d|inf {report.norms['linf']:.4f}  |d|2 {report.norms['l2']:.4f}  "
        f"steps {report.mean_steps:.1f}  queries {report.mean_queries:.1f}",
        "  per class robust acc: " + " ".join(f"{c}:{v['robust_acc']:.2f}" for c, v in report.per_class.items()),
    ]
    if report.minimum_norm:
        lines += format_minimum_norm(report.minimum_norm)
    return "\n".join(lines)


__all__ = ["ATTACK_FLAGS", "attack_settings", "build_attack", "own_norm", "format_minimum_norm", "format_report",
           "fractions", "minimum_norm_curve_values", "refuse_foreign_flags", "register", "run", "run_minimum_norm"]
