"""The robustness profile of a classifier, as the zoo cards and the README report it: clean accuracy, FGSM,
PGD-50 with 10 restarts, the strong evaluation, accuracy against eps, and the rubbish-class rate.

    python -m alva.evaluation.profile mnist/cnn-small mnist/cnn-small-pgd --n 1000 --out runs/profile

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
    """The figures of :mod:`alva.evaluation.profile` for ``model`` on ``(x, y)`` at L-inf radius ``eps``."""
    started = time.perf_counter()
    figures: dict[str, Any] = {"n": len(x), "eps": eps, "clean_acc": accuracy(model, x, y)}
    fgsm, _ = evaluate_attack(FGSM(model, eps=eps), x, y, progress=progress, name="FGSM")
    figures["fgsm_acc"] = fgsm.robust_acc
    pgd, _ = evaluate_attack(PGD(model, eps=eps, alpha=0.01, steps=50, restarts=restarts, early_stop=True, seed=seed),
                             x, y, progress=progress, name=f"PGD-50 x {restarts}")
    figures[f"pgd50x{restarts}_acc"] = pgd.robust_acc
    if strong:
        from alva.evaluation.strong import strong_evaluation

        result = strong_evaluation(model, x, y, eps, seed=seed, progress=progress, warn=False)
        figures["strong_acc"] = result.robust_acc
        figures["strong_table"] = result.table
        figures["sanity_warnings"] = result.warnings
    figures["accuracy_vs_eps"] = eps_curve(lambda e: PGD(model, eps=e, steps=20, seed=seed), eps_grid, x, y,
                                           progress=progress)
    figures["rubbish"] = rubbish_rate(model)
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
    import alva.models
    from alva.data import fixed_subset, load_mnist
    from alva.models import zoo
    from alva.report.figures import eps_curve_plot

    p = argparse.ArgumentParser(prog="python -m alva.evaluation.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help="zoo names or weights files")
    p.add_argument("--plot", nargs="+", metavar="PROFILE_JSON", default=None,
                   help="only draw the accuracy-against-eps figure of earlier runs' profile.json files to --out")
    p.add_argument("--n", type=int, default=1000, help="test images (a fixed stratified subset, seed 0)")
    p.add_argument("--eps", type=float, default=0.3)
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
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=0)
    out = Path(args.out)
    profiles, rows = {}, []
    for name in args.models:
        model = alva.models.load(name)
        profile = robustness_profile(model, x, y, args.eps, restarts=args.restarts, strong=not args.no_strong,
                                     progress=not args.no_progress)
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
    header = (f"Test images: {args.n} (stratified, seed 0); L-inf eps {args.eps}.\n\n"
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
