"""``alva transfer``: train a substitute or an ensemble of substitutes (same data, or labels queried from the
target), attack it white-box (PGD, FGSM or an attack of the transfer FGSM family) and report how often its
adversarial images fool the target(s)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from alva.attacks import FGSM, PGD, REGISTRY, AttackResult, build
from alva.attacks.ensemble import ENSEMBLE_MODES
from alva.attacks.transfer import TransferAttack
from alva.cli.common import add_common, add_numbers, paragraph, recorded
from alva.cli.inputs import EPS_HELP, add_data_options, add_model_options, default_eps, fraction, load_data
from alva.cli.model_inputs import load_models
from alva.cli.run_folder import claim
from alva.models import ARCHITECTURES
from alva.models import build as build_model
from alva.report import grouped_bars
from alva.tracking import atomic_write_json
from alva.training.loop import TrainSettings
from alva.training.substitute import MODES, substitute_data, train_substitute

__all__ = ["register", "run"]

DESCRIPTION = paragraph("""
Train a substitute classifier on the same data as the target (--substitute-mode same-data) or on training images
labelled by querying the target (query-labels, at most --queries queries), attack the substitute white-box on test
images of --data and check the images on each target. --attack mi-fgsm, di-fgsm, ti-fgsm, ni-fgsm or vmi-fgsm runs
the transfer-enhancing FGSM family (their options combine: --attack mi-fgsm --diversity-prob 0.5 --kernel-size 5 is
MI-DI-TI-FGSM); --substitutes K trains K substitutes, the i-th with seed --substitute-seed + i, and attacks them as
one ensemble. Writes summary.json and transfer.png to --out.
""")
FAMILY = ("mi-fgsm", "di-fgsm", "ti-fgsm", "ni-fgsm", "vmi-fgsm")
FAMILY_FLAGS = {"decay": "decay", "diversity_prob": "diversity-prob", "resize_rate": "resize-rate",
                "kernel_size": "kernel-size", "variance_samples": "variance-samples"}


def register(commands) -> None:
    p = commands.add_parser("transfer", help="black-box transfer attack from a substitute model",
                            description=DESCRIPTION)
    add_model_options(p, name="--target")
    add_data_options(p, splits=True)
    p.add_argument("--substitute-mode", default="query-labels", choices=MODES)
    p.add_argument("--substitute-arch", default="mlp", metavar="ARCH",
                   help=f"the substitute: an architecture ({', '.join(sorted(ARCHITECTURES))}) or the user's "
                        "FILE.py:FUNCTION (imports and runs that code), built for the data's images and classes")
    p.add_argument("--queries", type=int, default=5000, help="query-labels: target query budget for training")
    p.add_argument("--jacobian-rounds", type=int, default=0,
                   help="query-labels: Papernot et al. Jacobian augmentation rounds (0: none)")
    p.add_argument("--lam", type=float, default=0.1, help="Jacobian augmentation step")
    p.add_argument("--train-size", type=int, default=10000, help="same-data: training images of the substitute")
    add_numbers(p, epochs=2, lr=1e-3)
    p.add_argument("--substitutes", type=int, default=1,
                   help="substitutes attacked as one ensemble, each trained with its own seed")
    p.add_argument("--ensemble", default="logits", choices=ENSEMBLE_MODES,
                   help="how several substitutes combine: mean logits, or mean of their losses")
    p.add_argument("--attack", default="pgd", choices=["fgsm", "pgd", *FAMILY], help="white-box attack on the "
                   "substitute")
    p.add_argument("--eps", type=fraction, default=None, help=f"L-inf radius, e.g. 8/255 ({EPS_HELP})")
    p.add_argument("--steps", type=int, default=None, help="iterations (default: 40 for pgd, 10 for the family)")
    for name, flag in FAMILY_FLAGS.items():
        option = REGISTRY["mi-fgsm"].option(name)
        p.add_argument(f"--{flag}", type=option.type, default=None,
                       help=f"the FGSM family: {option.help} (default: the attack's)")
    p.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="any other option of a family attack (see alva attack --list), e.g. --option nesterov=true")
    p.add_argument("--n", type=int, default=1000, help="test images to attack (fixed stratified subset)")
    add_numbers(p, batch_size=500)
    p.add_argument("--seed", type=int, default=0, help="seeds the attack and the test subset")
    p.add_argument("--substitute-seed", type=int, default=1, help="seeds the substitute's data and weights")
    add_common(p, run, out="output folder")


def _joined(parts: list[AttackResult], field: str) -> torch.Tensor:
    """The tensor ``field`` of the results of all batches, on the CPU."""
    return torch.cat([getattr(p, field).cpu() for p in parts])


def family_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a family attack given on the command line (flags, then --option); refused for fgsm, pgd."""
    settings = {name: getattr(args, name) for name in FAMILY_FLAGS if getattr(args, name) is not None}
    for item in args.option:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option takes NAME=VALUE, got {item!r}")
        settings[name] = REGISTRY["mi-fgsm"].option(name).parse(value)
    if settings and args.attack not in FAMILY:
        raise ValueError(f"{sorted(settings)} are options of the FGSM family ({', '.join(FAMILY)}), not of "
                         f"{args.attack}")
    return settings


def _factory(args: argparse.Namespace):
    settings = family_settings(args)
    if args.attack == "fgsm":
        return lambda m: FGSM(m, eps=args.eps, seed=args.seed)
    if args.attack == "pgd":
        return lambda m: PGD(m, eps=args.eps, steps=args.steps, seed=args.seed)
    return lambda m: build(args.attack, m, eps=args.eps, steps=args.steps, seed=args.seed, **settings)


def train_one(args: argparse.Namespace, target: torch.nn.Module, x_train: torch.Tensor, y_train: torch.Tensor,
              seed: int) -> tuple[torch.nn.Module, int]:
    """One substitute trained with ``seed`` (its images, their order and its weights); returns it and the target
    queries it spent."""
    size = args.train_size if args.substitute_mode == "same-data" else args.queries
    return train_substitute(target, substitute_data(x_train, y_train, size, seed), mode=args.substitute_mode,
                            query_budget=args.queries, architecture=args.substitute_arch,
                            settings=TrainSettings(epochs=args.epochs, lr=args.lr, seed=seed),
                            jacobian_rounds=args.jacobian_rounds, lam=args.lam, seed=seed,
                            progress=not args.no_progress, device=args.device)


def run(args: argparse.Namespace) -> int:
    test_data = load_data(args, args.test_split)
    loaded = load_models(args, test_data, "--target")
    args.eps = args.eps if args.eps is not None else default_eps(test_data)
    train_data = load_data(args, args.train_split)
    if train_data.shape != test_data.shape or train_data.num_classes != test_data.num_classes:
        raise ValueError(f"the {args.train_split} and {args.test_split} splits of {args.data} differ in shape or "
                         "classes")
    build_model(args.substitute_arch, in_shape=test_data.shape, num_classes=test_data.num_classes)  # fails early
    if args.substitutes < 1:
        raise ValueError(f"--substitutes must be >= 1, got {args.substitutes}")
    if args.steps is None:
        args.steps = 40 if args.attack == "pgd" else 10
    factory = _factory(args)  # refuses options that the attack does not have, before any work
    x_test, y_test = test_data.tensors(min(args.n, len(test_data)), seed=args.seed)
    x_train, y_train = train_data.tensors()
    out = claim(args, {**{f"--target {name}": m for name, m in loaded}, "test data": (x_test, y_test),
                       "training data": (x_train, y_train)})

    rows: list[dict[str, Any]] = []
    substitutes: list[torch.nn.Module] = []
    for name, target in loaded:
        if not substitutes or args.substitute_mode == "query-labels":
            started = time.perf_counter()
            trained = [train_one(args, target, x_train, y_train, args.substitute_seed + i)
                       for i in range(args.substitutes)]
            substitutes, queries = [m for m, _ in trained], sum(q for _, q in trained)
            train_s = time.perf_counter() - started
        attack = TransferAttack(target, substitutes, factory, eps=args.eps, ensemble=args.ensemble, seed=args.seed)
        substitute = attack.substitute
        parts = [attack(x_test[i:i + args.batch_size].to(args.device), y_test[i:i + args.batch_size].to(args.device))
                 for i in range(0, len(x_test), args.batch_size)]
        result = AttackResult(_joined(parts, "x_adv"), _joined(parts, "success"), _joined(parts, "steps"),
                              _joined(parts, "queries"), _joined(parts, "adv_logits"), _joined(parts, "clean_logits"))
        sub_success = torch.cat([p.extras["substitute_success"].cpu() for p in parts])
        subs = []
        for i in range(0, len(x_test), args.batch_size):
            with torch.no_grad():
                subs.append(substitute(x_test[i:i + args.batch_size].to(args.device)).argmax(1).cpu())
        clean_ok = result.clean_logits.argmax(1) == y_test
        fooled = result.success & clean_ok
        row = {
            "target": name,
            "attack": args.attack,
            "substitutes": args.substitutes,
            "substitute_mode": args.substitute_mode,
            "training_queries": queries,
            "attack_queries": int(result.queries.sum()),
            "substitute_train_s": round(train_s, 2),
            "target_clean_acc": clean_ok.float().mean().item(),
            "substitute_clean_acc": (torch.cat(subs) == y_test).float().mean().item(),
            "substitute_agreement": (torch.cat(subs) == result.clean_logits.argmax(1)).float().mean().item(),
            "white_box_success_on_substitute": sub_success.float().mean().item(),
            "transfer_success": result.success.float().mean().item(),
            "transfer_success_on_correct": (fooled.sum() / clean_ok.sum().clamp(min=1)).item(),
            "target_robust_acc": (~result.success).float().mean().item(),
            "max_linf": (result.x_adv - x_test).abs().flatten(1).amax(1).max().item(),
        }
        rows.append(row)
        print(f"{name}: {args.substitutes} x {args.substitute_mode} substitute ({queries} training queries, agreement "
              f"{row['substitute_agreement']:.3f}); {args.attack} eps={args.eps:.4g}: transfer success "
              f"{row['transfer_success']:.3f} (on correctly classified {row['transfer_success_on_correct']:.3f}), "
              f"target robust acc {row['target_robust_acc']:.3f}")
    atomic_write_json(out / "summary.json", {"settings": recorded(args), "results": rows}, kind="transfer-summary")
    grouped_bars(out / "transfer.png", [r["target"] for r in rows],
                 {"white-box on substitute": [r["white_box_success_on_substitute"] for r in rows],
                  "transfer to target": [r["transfer_success"] for r in rows]},
                 ylabel="attack success rate", title=f"{args.attack.upper()} eps={args.eps:.4g} from a "
                                                     f"{args.substitute_arch} substitute ({args.substitute_mode})")
    print(f"wrote {out}/summary.json, {out}/transfer.png")
    return 0
