"""Catastrophic overfitting of fast FGSM training on MNIST, and the guards against it, over several seeds.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/catastrophic_overfitting.py --runs /work/co-runs --jobs 1

For every recipe and seed: ``alva train`` (cnn-small, full MNIST training set, 10 epochs, eps 0.3, cyclic
learning rate 5e-3, batch 128, PGD-20 validation on 500 test images after each epoch; a recipe's own options
come last and override these) into ``RUNS/RECIPE/sSEED``,
then the strong evaluation ``alva eval --eps 0.3 --n N --threads 1`` (AutoAttack standard with FAB-T) into
``RUNS/RECIPE/sSEED/eval``. Resumable: finished trainings and evaluations are skipped, interrupted ones resumed.
Runs the jobs in the order recipes x seeds (seed-major within each group of ``--recipes``), ``--jobs`` at a
time (a lock file per pair lets a second driver share the work), then writes
``benchmarks/results/catastrophic_overfitting.json`` and prints the markdown table of what
has finished.

A run has *collapsed* when some epoch after the first, trained at the full eps, ends with PGD-20 validation
accuracy below 5% while clean accuracy is above 90%: the signature of catastrophic overfitting (Wong et al.
2020). The first epoch is left out: it starts from random weights at a learning rate rising from 0, so a
model is not yet robust at its end whether or not it collapses.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alva.tracking import atomic_write_json

EPOCHS = 10
COMMON = ["--eps", "0.3", "--epochs", str(EPOCHS), "--schedule", "cyclic", "--lr", "5e-3", "--eval-size", "500",
          "--no-progress"]
RECIPES: dict[str, tuple[str, list[str]]] = {
    "wong": ("fast FGSM, Wong et al.'s recipe (alpha 1.25 eps, start not clipped, roll-back guard on)",
             ["--adv", "fast"]),
    "wong-ramp": ("the same + eps ramp over 3 epochs", ["--adv", "fast", "--ramp-epochs", "3"]),
    "wong-lr2": ("the same with the learning rate peaking at 2e-3", ["--adv", "fast", "--lr", "2e-3"]),
    "wong-raw": ("the same on raw pixels (no input standardisation) in batches of 100, as in their MNIST script",
                 ["--adv", "fast", "--mean", "0", "--std", "1", "--batch-size", "100"]),
    "wong-clip": ("fast FGSM with the random start clipped to [0, 1] before its gradient",
                  ["--adv", "fast", "--clip-start"]),
    "wong-ramp-clip": ("the same (start clipped) + eps ramp over 3 epochs",
                       ["--adv", "fast", "--clip-start", "--ramp-epochs", "3"]),
    "wong-raw-clip": ("the same (start clipped) on raw pixels in batches of 100",
                      ["--adv", "fast", "--clip-start", "--mean", "0", "--std", "1", "--batch-size", "100"]),
    "n-fgsm": ("N-FGSM (noise 2 eps, step eps, no projection)", ["--adv", "n-fgsm"]),
    "grad-align": ("FGSM + GradAlign (lambda 2)", ["--adv", "grad-align"]),
    "n-fgsm-k1": ("N-FGSM, noise 1 eps", ["--adv", "n-fgsm", "--noise", "1"]),
    "wong-retry": ("Wong et al.'s recipe; on a collapse, roll back and train the epoch again at half the learning "
                   "rate (`--collapse-lr-factor 0.5`)", ["--adv", "fast", "--collapse-lr-factor", "0.5"]),
    "wong-ramp-retry": ("the same + eps ramp over 3 epochs",
                        ["--adv", "fast", "--ramp-epochs", "3", "--collapse-lr-factor", "0.5"]),
}
RESULT = Path(__file__).parent / "results" / "catastrophic_overfitting.json"
COLLAPSE_PGD, COLLAPSE_CLEAN = 0.05, 0.9


def alva(*args: str, log: Path) -> None:
    """Run ``python -m alva.cli.main ARGS`` (this interpreter, this environment), appending its output to
    ``log``; raise on failure."""
    with open(log, "a") as out:
        done = subprocess.run([sys.executable, "-m", "alva.cli.main", *args], stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"alva {' '.join(args)} failed ({done.returncode}); see {log}")


def train_and_evaluate(runs: Path, recipe: str, seed: int, n: int) -> None:
    """Train one (recipe, seed), then evaluate it; each part skipped when done and resumed when interrupted."""
    run = runs / recipe / f"s{seed}"
    run.parent.mkdir(parents=True, exist_ok=True)
    log = run.parent / f"s{seed}.log"
    if not _trained(run):
        resume = ["--resume"] if (run / "checkpoint.safetensors").exists() else []
        alva(*train_args(recipe), "--seed", str(seed), "--out", str(run), *resume, log=log)
    evaluation = run / "eval"
    if not (evaluation / "result.json").exists():
        resume = ["--resume"] if (evaluation / "state.safetensors").exists() else []
        alva("eval", "--model", str(run), "--eps", "0.3", "--n", str(n), "--threads", "1", "--out", str(evaluation),
             *resume, log=log)


def train_args(recipe: str) -> list[str]:
    """The ``alva`` arguments that train ``recipe``: the common options, then the recipe's own."""
    return ["train", *COMMON, *RECIPES[recipe][1]]


def _trained(run: Path) -> bool:
    epochs = _epochs(run)
    return (run / "model.json").exists() and bool(epochs) and (len(epochs) == EPOCHS or "stopped" in epochs[-1])


def _epochs(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "epoch" in r and "eval" in r]


def summarise_run(run: Path, ramp_epochs: int) -> dict | None:
    """The figures of one finished run: strong-evaluation and clean accuracy, training seconds, the PGD-20
    validation accuracy per epoch, whether it collapsed and whether the roll-back guard fired."""
    result_path = run / "eval" / "result.json"
    if not result_path.exists():
        return None
    result = json.loads(result_path.read_text())
    card = json.loads((run / "model.json").read_text())
    epochs = _epochs(run)
    pgd = [e["eval"].get("pgd20_acc") for e in epochs]
    clean = [e["eval"]["clean_acc"] for e in epochs]
    collapsed = [e["epoch"] for e, p, c in zip(epochs, pgd, clean, strict=True)
                 if e["epoch"] > max(ramp_epochs, 1) and p is not None and p < COLLAPSE_PGD and c > COLLAPSE_CLEAN]
    return {"strong_acc": result["robust_acc"], "clean_acc": result["clean_acc"], "n": result["n"],
            "warnings": len(result.get("warnings", [])), "train_time_s": card["train_time_s"],
            "final_clean_test_acc": card["clean_test_accuracy"], "pgd20_per_epoch": pgd,
            "collapsed_epochs": collapsed, "guard_fired": any("stopped" in e or "retried" in e for e in epochs),
            "retries": sum(len(e.get("retried", [])) for e in epochs),
            "epochs_run": len(epochs)}


def summarise(runs: Path, recipes: list[str], seeds: list[int]) -> dict:
    table = {}
    for recipe in recipes:
        flags = RECIPES[recipe][1]
        ramp = int(flags[flags.index("--ramp-epochs") + 1]) if "--ramp-epochs" in flags else 0
        per_seed = {seed: summarise_run(runs / recipe / f"s{seed}", ramp) for seed in seeds}
        done = {s: r for s, r in per_seed.items() if r is not None}
        if not done:
            continue
        strong = [r["strong_acc"] for r in done.values()]
        table[recipe] = {
            "recipe": RECIPES[recipe][0], "command": " ".join(["alva", *train_args(recipe)]),
            "seeds": done, "strong_mean": statistics.mean(strong), "strong_min": min(strong),
            "strong_max": max(strong), "clean_mean": statistics.mean(r["clean_acc"] for r in done.values()),
            "train_s_mean": statistics.mean(r["train_time_s"] for r in done.values()),
            "collapsed": sum(bool(r["collapsed_epochs"]) for r in done.values()),
            "guard_fired": sum(r["guard_fired"] for r in done.values()),
            "reached_80": sum(a >= 0.8 for a in strong)}
    return table


def markdown(table: dict, n: int) -> str:
    lines = [f"| recipe | seeds: strong eval ({n} images) | mean | min | max | clean (mean) | train s (mean) | "
             "collapsed | >= 80% |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table.values():
        values = ", ".join(f"{r['strong_acc']:.1%}" for r in row["seeds"].values())
        k = len(row["seeds"])
        lines.append(f"| {row['recipe']} | {values} | {row['strong_mean']:.1%} | {row['strong_min']:.1%} | "
                     f"{row['strong_max']:.1%} | {row['clean_mean']:.1%} | {row['train_s_mean']:.0f} | "
                     f"{row['collapsed']}/{k} | {row['reached_80']}/{k} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, required=True, help="folder of the run folders (outside the repository)")
    parser.add_argument("--recipes", default="wong,wong-ramp,wong-lr2,wong-raw,wong-clip,wong-ramp-clip,n-fgsm",
                        help="groups separated by ';', recipes by ','; each group runs seed by seed before the next "
                             f"(known: {', '.join(RECIPES)})")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--n", type=int, default=500, help="test images of the strong evaluation")
    parser.add_argument("--jobs", type=int, default=1, help="(recipe, seed) pairs run at once")
    parser.add_argument("--summary-only", action="store_true", help="only write the JSON and print the table")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    groups = [[r for r in group.split(",") if r] for group in args.recipes.split(";")]
    recipes = [r for group in groups for r in group]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown recipes {unknown}; known: {list(RECIPES)}")
    if not args.summary_only:
        order = [(recipe, seed) for group in groups for seed in seeds for recipe in group]
        started = time.time()
        with ThreadPoolExecutor(args.jobs) as pool:
            for job, error in zip(order, pool.map(lambda job: _attempt(args.runs, *job, args.n), order),
                                  strict=True):
                print(f"{job[0]} seed {job[1]}: {error or 'done'} ({time.time() - started:.0f} s)", flush=True)
    table = summarise(args.runs, recipes, seeds)
    kept = earlier_rows(RESULT, args.n, table)
    atomic_write_json(RESULT, {"n": args.n, "runs": str(args.runs), "recipes": {**kept, **table}},
                      kind="catastrophic-overfitting")
    print(markdown({**kept, **table}, args.n))


def earlier_rows(path: Path, n: int, table: dict) -> dict:
    """The rows of ``path`` (an earlier summary with the same ``n``) for recipes ``table`` does not hold, so that
    a run of some recipes keeps what others measured; each row names the runs folder it came from."""
    if not path.exists():
        return {}
    earlier = json.loads(path.read_text())
    if earlier.get("n") != n:
        return {}
    return {recipe: {"runs": earlier.get("runs"), **row} for recipe, row in earlier["recipes"].items()
            if recipe not in table}


def _attempt(runs: Path, recipe: str, seed: int, n: int) -> str | None:
    """Train and evaluate unless another driver holds the pair (its lock file exists); the error, if any."""
    lock = runs / recipe / f"s{seed}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        lock.touch(exist_ok=False)
    except FileExistsError:
        return f"skipped: {lock} exists (another driver runs it, or remove it)"
    try:
        train_and_evaluate(runs, recipe, seed, n)
    except RuntimeError as error:
        return str(error)
    finally:
        lock.unlink()
    return None


if __name__ == "__main__":
    main()
