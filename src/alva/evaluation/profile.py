"""The robustness profile of a classifier, as the zoo cards and the README report it: clean accuracy, FGSM,
PGD-50 with 10 restarts, the strong evaluation, accuracy against eps, and the rubbish-class rate.

    python -m alva.evaluation.profile mnist/cnn-small mnist/cnn-small-pgd --n 1000 --out runs/profile
    python -m alva.evaluation.profile runs/cifar-pgd --trust-code --data cifar10:DIR --eps 8/255 --out runs/p

writes ``profile.json``, ``profile.md`` (one table row per model) and ``accuracy_vs_eps.png``; with
``--update-cards`` the figures also go into each model's card (its ``.json`` and the copy in the weights file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva.attacks import FGSM, PGD
from alva.evaluation.accuracy import accuracy
from alva.evaluation.robustness import eps_curve, evaluate_attack
from alva.evaluation.rubbish import rubbish_rate
from alva.tracking.files import atomic_write_bytes, atomic_write_json

EPS_GRID = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def robustness_profile(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 0.3, *,
                       restarts: int = 10, strong: bool = True, eps_grid: tuple[float, ...] = EPS_GRID,
                       seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """The figures of :mod:`alva.evaluation.profile` for ``model`` on ``(x, y)`` at L-inf radius ``eps``.

    PGD-50 steps by ``eps / 30`` (0.01 at MNIST's 0.3); the rubbish-class noise has the shape of ``x``.
    """
    started = time.perf_counter()
    figures: dict[str, Any] = {"n": len(x), "eps": eps, "clean_acc": accuracy(model, x, y)}
    fgsm, _ = evaluate_attack(FGSM(model, eps=eps), x, y, progress=progress, name="FGSM")
    figures["fgsm_acc"] = fgsm.robust_acc
    pgd50 = PGD(model, eps=eps, alpha=0.01 * eps / 0.3, steps=50, restarts=restarts, early_stop=True, seed=seed)
    pgd, _ = evaluate_attack(pgd50, x, y, progress=progress, name=f"PGD-50 x {restarts}")
    figures[f"pgd50x{restarts}_acc"] = pgd.robust_acc
    if strong:
        from alva.evaluation.strong import strong_evaluation

        result = strong_evaluation(model, x, y, eps, seed=seed, progress=progress, warn=False)
        figures["strong_acc"] = result.robust_acc
        figures["strong_table"] = result.table
        figures["sanity_warnings"] = result.warnings
    figures["accuracy_vs_eps"] = eps_curve(lambda e: PGD(model, eps=e, steps=20, seed=seed), eps_grid, x, y,
                                           progress=progress)
    figures["rubbish"] = rubbish_rate(model, shape=tuple(x.shape[1:]))
    figures["eval_time_s"] = round(time.perf_counter() - started, 1)
    return figures


def update_card(name: str, profile: dict[str, Any]) -> None:
    """Write ``profile`` into the card of model ``name`` (zoo name, weights file or run folder) as
    ``robustness``: the ``.json`` beside the weights and the copy in the weights file's header."""
    import alva.models
    from alva.models import zoo

    card = {**zoo.card(name), "robustness": profile}
    zoo.save(alva.models.load(name), card, zoo.resolve(name))


def main(argv: list[str] | None = None) -> int:
    import alva.data
    import alva.models
    from alva.models import zoo
    from alva.report.figures import eps_curve_plot
    from alva.units import parse_fraction

    p = argparse.ArgumentParser(prog="python -m alva.evaluation.profile", description=__doc__, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="zoo names, weights files with a card or run folders")
    p.add_argument("--data", default="mnist", help="the data set, any spec of alva.data.load (default: mnist)")
    p.add_argument("--split", default="test", help="the split of --data (default: test)")
    p.add_argument("--trust-code", action="store_true", help="load cards that name a factory (this runs its code)")
    p.add_argument("--plot", nargs="+", metavar="PROFILE_JSON", default=None,
                   help="only draw the accuracy-against-eps figure of earlier runs' profile.json files to --out")
    p.add_argument("--n", type=int, default=1000, help="test images (a fixed stratified subset, seed 0)")
    p.add_argument("--eps", type=parse_fraction, default=None,
                   help="L-inf radius, e.g. 8/255 (default: 0.3 for 1-channel data, 8/255 otherwise)")
    p.add_argument("--restarts", type=int, default=10)
    p.add_argument("--no-strong", action="store_true", help="skip the strong evaluation")
    p.add_argument("--out", default="runs/profile")
    p.add_argument("--update-cards", action="store_true", help="write the figures into each model's card")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.plot:
        curves = {}
        for path in args.plot:
            curves.update({n: q["accuracy_vs_eps"] for n, q in json.loads(Path(path).read_text()).items()
                           if isinstance(q, dict)})
        print(eps_curve_plot(args.out, curves, title="PGD-20 accuracy against eps (L-inf)"))
        return 0
    if not args.models:
        p.error("name at least one model (or --plot PROFILE_JSON ...)")
    data = alva.data.load(args.data, args.split)
    eps = args.eps if args.eps is not None else (0.3 if data.shape[0] == 1 else 8 / 255)
    grid = EPS_GRID if eps == 0.3 else tuple(eps * k / 6 for k in range(9))
    models = {name: alva.models.load(name, trust_code=args.trust_code) for name in args.models}
    for name, model in models.items():  # every model fits the data before any work starts
        alva.models.check_fits(model, data.shape, data.num_classes, model_name=name, data_name=args.data)
    x, y = data.tensors(min(args.n, len(data)), seed=0)
    out = Path(args.out)
    profiles, rows = {}, []
    for name, model in models.items():
        profile = robustness_profile(model, x, y, eps, restarts=args.restarts, strong=not args.no_strong,
                                     eps_grid=grid, progress=not args.no_progress)
        info = zoo.card(name)
        profile["train_time_s"] = info.get("train_time_s")
        profiles[name] = profile
        strong = f"{profile['strong_acc']:.1%}" if "strong_acc" in profile else "-"
        rows.append(f"| `{name}` | {profile['clean_acc']:.1%} | {profile['fgsm_acc']:.1%} | "
                    f"{profile[f'pgd50x{args.restarts}_acc']:.1%} | {strong} | "
                    f"{profile['rubbish']['rubbish_rate']:.1%} | {profile['train_time_s'] or '-'} |")
        atomic_write_json(out / "profile.json", profiles, kind="robustness-profile")
        if args.update_cards:
            update_card(name, {**profile, "measured_by": "python -m alva.evaluation.profile " + " ".join(
                argv if argv is not None else sys.argv[1:])})
    header = (f"Test images: {len(x)} of {args.data} (stratified, seed 0); L-inf eps {eps:.4g}.\n\n"
              f"| model | clean | FGSM | PGD-50 x {args.restarts} restarts | strong evaluation | "
              "rubbish rate | training s |\n|---|---:|---:|---:|---:|---:|---:|")
    table = header + "\n" + "\n".join(rows) + "\n"
    atomic_write_bytes(out / "profile.md", table.encode())
    eps_curve_plot(out / "accuracy_vs_eps.png", {n: p["accuracy_vs_eps"] for n, p in profiles.items()},
                   title="PGD-20 accuracy against eps (L-inf)")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
