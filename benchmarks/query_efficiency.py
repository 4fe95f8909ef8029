"""Query efficiency of the black-box attacks: success against the number of queries per image.

On the shipped ``mnist/cnn-small`` and ``mnist/cnn-small-pgd`` and a fixed stratified subset of ``--n`` MNIST
test images (seed 0), each attack that sees the model's scores runs with a budget of ``--budgets`` queries per
image (default 100, 1,000 and 10,000; the clean query included), and each attack that sees only labels
(``hsj``, ``boundary``, ``sign-opt``: those of them that the registry has; the others are skipped and named):

* score-based (``spsa``, ``nes`` under L-inf eps 0.3; ``simba`` with the DCT and the pixel basis under L2
  eps 2.0; ``square`` under both, ``one-pixel`` differential evolution): the success rate (over all images:
  an image the model gets wrong is a success at its clean query) at each budget;
* decision-based: the median L2 distance reached at each budget (over the images the model gets right;
  inf when fewer than half are broken) and the success rate within L2 eps 2.0.

An attack whose search does not depend on its budget and stops at success (SPSA, NES, SimBA, Square with the
paper's schedule of ``p`` over 10,000 steps) runs once, at the largest budget: an image succeeds under a
smaller budget exactly when it had succeeded by then, which its query count at success says. The others run
once per budget. Each row gives the process CPU seconds and wall-clock seconds of its runs (one thread).

Writes a markdown table, a JSON file (kind ``query-efficiency``) and a plot of success against queries;
``--update`` keeps the rows of an earlier run that are not measured again (on the same images and budgets).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/query_efficiency.py [--n 200] [--models mnist/cnn-small,...]
        [--attacks spsa,nes,...] [--budgets 100,1000,10000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from alva import models  # noqa: E402
from alva.attacks import REGISTRY, build  # noqa: E402
from alva.data import fixed_subset, load_mnist  # noqa: E402
from alva.evaluation import run_attack  # noqa: E402
from alva.report.figures import save_figure  # noqa: E402
from alva.tracking import atomic_write_json  # noqa: E402

BUDGET_OPTIONS = ("n_queries", "max_queries", "queries", "query_budget")


@dataclass(frozen=True)
class Entry:
    """An attack of the table: its registry name, settings, threat model, and whether one run at the largest
    budget gives every smaller one (``prefix``)."""

    label: str
    name: str
    settings: dict[str, Any]
    threat: str
    prefix: bool
    decision: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


SCORE = (
    Entry("spsa", "spsa", {"eps": 0.3, "norm": "linf", "samples": 8, "lr": 0.05}, "linf 0.3", True),
    Entry("nes", "nes", {"eps": 0.3, "norm": "linf", "samples": 8, "alpha": 0.05, "sigma": 0.01}, "linf 0.3", True),
    Entry("simba-dct", "simba", {"eps": 2.0, "norm": "l2", "basis": "dct", "step": 0.5}, "l2 2.0", True),
    Entry("simba-pixel", "simba", {"eps": 2.0, "norm": "l2", "basis": "pixel", "step": 0.5}, "l2 2.0", True),
    Entry("square-linf", "square", {"eps": 0.3, "norm": "linf", "rescale_schedule": False}, "linf 0.3", True),
    Entry("square-l2", "square", {"eps": 2.0, "norm": "l2", "rescale_schedule": False}, "l2 2.0", True),
    Entry("one-pixel", "one-pixel", {"pixels": 1, "popsize": 50, "generations": 1000}, "l0 1 pixel", False),
)
DECISION = tuple(Entry(name, name, {}, "l2 (minimum norm)", False, decision=True)
                 for name in ("hsj", "boundary", "sign-opt"))


ORDER = {e.label: i for i, e in enumerate((*SCORE, *DECISION))}


def budget_option(name: str) -> str | None:
    options = {o.name for o in REGISTRY[name].options}
    return next((o for o in BUDGET_OPTIONS if o in options), None)


def settings_for(entry: Entry, budget: int) -> dict[str, Any]:
    """The entry's settings with the budget (and, for a decision-based attack, L2 where it has a norm)."""
    settings = {**entry.settings, "seed": 0, budget_option(entry.name) or "n_queries": budget}
    if entry.decision:
        norm = next((o for o in REGISTRY[entry.name].options if o.name == "norm"), None)
        if norm is not None and (norm.choices is None or "l2" in norm.choices):
            settings["norm"] = "l2"
    return settings


def timed_run(model, entry: Entry, budget: int, x, y):
    attack = build(entry.name, model, **settings_for(entry, budget))
    cpu, wall = time.process_time(), time.perf_counter()
    result = run_attack(attack, x, y, batch_size=len(x), progress=False)
    return result, time.process_time() - cpu, time.perf_counter() - wall


def l2_distances(result, x: torch.Tensor) -> torch.Tensor:
    """Per image, the L2 distance of a success (0 for an image wrong before the attack), inf for a failure."""
    d = (result.x_adv - x).reshape(len(x), -1).norm(dim=1)
    return torch.where(result.success, d, math.inf)


def score_row(model, entry: Entry, budgets: list[int], x, y) -> dict[str, Any]:
    runs = [max(budgets)] if entry.prefix else budgets
    success, queries, cpu, wall = {}, {}, 0.0, 0.0
    for run_budget in runs:
        result, c, w = timed_run(model, entry, run_budget, x, y)
        cpu, wall = cpu + c, wall + w
        for budget in budgets if entry.prefix else [run_budget]:
            broken = result.success & (result.queries <= budget)
            success[budget] = broken.double().mean().item()
            queries[budget] = result.queries[broken].double().median().item() if broken.any() else None
        assert (result.queries <= run_budget).all(), f"{entry.label} went over its budget"
    return {"attack": entry.label, "registry": entry.name, "threat": entry.threat, "runs": runs,
            "settings": entry.settings, "success": success, "median_queries_at_success": queries,
            "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}


def decision_row(model, entry: Entry, budgets: list[int], x, y, clean_right: torch.Tensor) -> dict[str, Any]:
    median, success, cpu, wall = {}, {}, 0.0, 0.0
    for budget in budgets:
        result, c, w = timed_run(model, entry, budget, x, y)
        cpu, wall = cpu + c, wall + w
        d = l2_distances(result, x)[clean_right]
        median[budget] = d.median().item() if len(d) else None
        success[budget] = (l2_distances(result, x) <= 2.0).double().mean().item()
    return {"attack": entry.label, "registry": entry.name, "threat": entry.threat, "runs": budgets,
            "settings": settings_for(entry, max(budgets)), "median_l2": median, "success": success,
            "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}


def plot(path: Path, results: dict[str, list[dict[str, Any]]], budgets: list[int]) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 3.8), squeeze=False)
    for ax, (model_name, rows) in zip(axes[0], results.items(), strict=True):
        for row in rows:
            style = "--" if "median_l2" in row else "-"
            ax.plot(budgets, [row["success"][b] for b in budgets], style, marker="o", markersize=3,
                    label=f"{row['attack']} ({row['threat'] if 'median_l2' not in row else 'l2 2.0'})")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("queries per image")
        ax.set_ylabel("success rate")
        ax.set_title(model_name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.3f}"
    return str(v)


def markdown(report: dict[str, Any], budgets: list[int]) -> str:
    head = " / ".join(f"{b:,}" for b in budgets)
    lines = [f"Images: {report['n']} (fixed stratified MNIST test subset, seed 0); threads: 1; {report['date']}.", ""]
    for model_name, rows in report["results"].items():
        lines += [f"### {model_name} (clean accuracy {report['clean_accuracy'][model_name]:.3f})", "",
                  f"| attack | threat model | success at {head} | median L2 at {head} | CPU s | wall s |",
                  "|---|---|---|---|---|---|"]
        for row in rows:
            rates = " / ".join(fmt(row["success"][b]) for b in budgets)
            dist = " / ".join(fmt(row["median_l2"][b]) for b in budgets) if "median_l2" in row else "-"
            lines.append(f"| {row['attack']} | {row['threat']} | {rates} | {dist} | {row['cpu_s']} | {row['wall_s']} |")
        lines.append("")
    if report["skipped"]:
        lines.append("Not in the registry (skipped): " + ", ".join(report["skipped"]) + ".")
    return "\n".join(lines) + "\n"


def earlier_report(path: Path, fresh: dict[str, Any]) -> dict[str, Any]:
    """The report of an earlier run in ``path`` on the same images and budgets (its per-budget figures keyed by
    int again), else ``fresh``."""
    if not path.exists():
        return fresh
    old = json.loads(path.read_text())
    if old["n"] != fresh["n"] or old["budgets"] != fresh["budgets"]:
        return fresh
    old.pop("kind", None)
    for rows in old["results"].values():
        for row in rows:
            for key in ("success", "median_queries_at_success", "median_l2"):
                if key in row:
                    row[key] = {int(b): v for b, v in row[key].items()}
    return {**old, "date": fresh["date"], "skipped": fresh["skipped"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    p.add_argument("--attacks", default=None, help="comma-separated labels; default: all")
    p.add_argument("--budgets", default="100,1000,10000")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--update", action="store_true",
                   help="keep the earlier rows in --out (same images and budgets) not measured again")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    budgets = sorted(int(b) for b in args.budgets.split(","))
    wanted = None if args.attacks is None else set(args.attacks.split(","))
    entries = [e for e in (*SCORE, *DECISION) if wanted is None or e.label in wanted]
    skipped = [e.label for e in (*SCORE, *DECISION) if e.name not in REGISTRY]
    entries = [e for e in entries if e.name in REGISTRY]
    x, y = fixed_subset(*load_mnist("test", download=False), args.n, seed=0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"n": args.n, "budgets": budgets, "threads": args.threads, "machine": platform.processor(),
                              "date": datetime.date.today().isoformat(), "skipped": skipped, "clean_accuracy": {},
                              "results": {}}
    if args.update:
        report = earlier_report(out / "query_efficiency.json", report)
    for model_name in args.models.split(","):
        model = models.load(model_name)
        with torch.no_grad():
            clean_right = model(x).argmax(1) == y
        report["clean_accuracy"][model_name] = clean_right.double().mean().item()
        rows = report["results"].setdefault(model_name, [])
        rows.sort(key=lambda r: ORDER.get(r["attack"], len(ORDER)))
        for entry in entries:
            row = (decision_row(model, entry, budgets, x, y, clean_right) if entry.decision
                   else score_row(model, entry, budgets, x, y))
            rows[:] = sorted([r for r in rows if r["attack"] != entry.label] + [row],
                             key=lambda r: ORDER.get(r["attack"], len(ORDER)))
            print(model_name, row["attack"], {b: fmt(row["success"][b]) for b in budgets},
                  f"cpu {row['cpu_s']} s, wall {row['wall_s']} s", flush=True)
            atomic_write_json(out / "query_efficiency.json", report, kind="query-efficiency")  # after each row
    (out / "query_efficiency.md").write_text(markdown(report, budgets))
    plot(out / "query_efficiency.png", report["results"], budgets)
    print(markdown(report, budgets))


if __name__ == "__main__":
    main()
