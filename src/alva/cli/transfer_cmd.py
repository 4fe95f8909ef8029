"""``alva transfer``: train a substitute (same data, or labels queried from the target), attack it white-box
and report how often its adversarial images fool the target(s)."""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

from alva.attacks import FGSM, PGD, AttackResult
from alva.attacks.transfer import TransferAttack
from alva.cli.common import add_common, add_numbers, paragraph, recorded
from alva.cli.inputs import EPS_HELP, add_data_options, add_model_options, default_eps, fraction, load_data
from alva.cli.model_inputs import load_models
from alva.cli.run_folder import claim
from alva.data import fixed_subset
from alva.models import ARCHITECTURES, build
from alva.report import grouped_bars
from alva.tracking import atomic_write_json
from alva.training.loop import TrainSettings
from alva.training.substitute import MODES, train_substitute

__all__ = ["register", "run"]

DESCRIPTION = paragraph("""
Train a substitute classifier on the same data as the target (--substitute-mode same-data) or on training images
labelled by querying the target (query-labels, at most --queries queries), attack the substitute white-box on test
images of --data and check the images on each target. Writes summary.json and transfer.png to --out.
""")


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
    p.add_argument("--attack", default="pgd", choices=["fgsm", "pgd"], help="white-box attack on the substitute")
    p.add_argument("--eps", type=fraction, default=None, help=f"L-inf radius, e.g. 8/255 ({EPS_HELP})")
    p.add_argument("--steps", type=int, default=40, help="PGD steps")
    p.add_argument("--n", type=int, default=1000, help="test images to attack (fixed stratified subset)")
    add_numbers(p, batch_size=500)
    p.add_argument("--seed", type=int, default=0, help="seeds the attack and the test subset")
    p.add_argument("--substitute-seed", type=int, default=1, help="seeds the substitute's data and weights")
    add_common(p, run, out="output folder")


def _joined(parts: list[AttackResult], field: str) -> torch.Tensor:
    """The tensor ``field`` of the results of all batches, on the CPU."""
    return torch.cat([getattr(p, field).cpu() for p in parts])


def _factory(args: argparse.Namespace):
    if args.attack == "fgsm":
        return lambda m: FGSM(m, eps=args.eps, seed=args.seed)
    return lambda m: PGD(m, eps=args.eps, steps=args.steps, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    test_data = load_data(args, args.test_split)
    loaded = load_models(args, test_data, "--target")
    args.eps = args.eps if args.eps is not None else default_eps(test_data)
    train_data = load_data(args, args.train_split)
    if train_data.shape != test_data.shape or train_data.num_classes != test_data.num_classes:
        raise ValueError(f"the {args.train_split} and {args.test_split} splits of {args.data} differ in shape or "
                         "classes")
    build(args.substitute_arch, in_shape=test_data.shape, num_classes=test_data.num_classes)  # fails before any work
    x_test, y_test = test_data.tensors(min(args.n, len(test_data)), seed=args.seed)
    x_train, y_train = train_data.tensors()
    out = claim(args, {**{f"--target {name}": m for name, m in loaded}, "test data": (x_test, y_test),
                       "training data": (x_train, y_train)})
    settings = TrainSettings(epochs=args.epochs, lr=args.lr, seed=args.substitute_seed)
    progress = not args.no_progress
    size = args.train_size if args.substitute_mode == "same-data" else args.queries
    data = fixed_subset(x_train, y_train, min(size, len(x_train)), seed=args.substitute_seed)
    # The images the substitute learns from are in a random order (fixed_subset sorts by index).
    order = torch.randperm(len(data[0]), generator=torch.Generator().manual_seed(args.substitute_seed))
    data = (data[0][order], data[1][order])

    rows: list[dict[str, Any]] = []
    substitute, queries = None, 0
    for name, target in loaded:
        if substitute is None or args.substitute_mode == "query-labels":
            started = time.perf_counter()
            substitute, queries = train_substitute(
                target, data, mode=args.substitute_mode, query_budget=args.queries,
                architecture=args.substitute_arch, settings=settings, jacobian_rounds=args.jacobian_rounds,
                lam=args.lam, seed=args.substitute_seed, progress=progress, device=args.device)
            train_s = time.perf_counter() - started
        attack = TransferAttack(target, substitute, _factory(args), eps=args.eps, seed=args.seed)
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
        print(f"{name}: {args.substitute_mode} substitute ({queries} training queries, agreement "
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
