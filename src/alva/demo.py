"""The main job: train a small MNIST classifier, attack it with FGSM and PGD, write results and pictures.

Every part writes ``OUT/<part>/result.json`` when it finishes; a rerun skips finished parts and
resumes training from its last epoch, so stopping the demo loses at most the part under way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from alva.attacks import FGSM, PGD
from alva.data import fixed_subset, load_mnist
from alva.evaluation import eps_curve, evaluate_attack
from alva.models import card, load
from alva.report import adversarial_grid, eps_curve_plot
from alva.tracking import atomic_write_json
from alva.training import ClassifierRun, TrainSettings, train_classifier

EPS_VALUES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def _part(out: Path, name: str, work: Callable[[Path], dict[str, Any]], log: Callable[[str], None]
          ) -> dict[str, Any]:
    folder = out / name
    done = folder / "result.json"
    if done.exists():
        log(f"[{name}] already done, skipped ({done})")
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    log(f"[{name}] running")
    result = work(folder)
    result["seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(done, result)
    log(f"[{name}] done in {result['seconds']} s")
    return result


def run_demo(out: str | Path = "runs/demo", *, epochs: int = 2, n_eval: int = 1000, seed: int = 0,
             train_size: int | None = None,
             progress: bool = True, data_root: str | None = None, device: str = "cpu",
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out`` and return its summary (also written to ``out/summary.json`` and ``.md``)."""
    out = Path(out)
    x_test, y_test = load_mnist("test", data_root)
    x, y = fixed_subset(x_test, y_test, n_eval, seed=seed)

    def train(folder: Path) -> dict[str, Any]:
        run = ClassifierRun(model="cnn-small", out=str(folder), settings=TrainSettings(epochs=epochs, seed=seed),
                            train_size=train_size, device=device, data_root=data_root)
        train_classifier(run, resume=True, progress=progress,
                                 command=f"alva demo --epochs {epochs} --seed {seed}")
        return {"model": str(folder), "clean_test_acc": card(folder)["clean_test_accuracy"]}

    trained = _part(out, "train", train, log)
    model = load(trained["model"], device=device)
    attacks = {
        "fgsm": lambda eps: FGSM(model, eps=eps),
        "pgd": lambda eps: PGD(model, eps=eps, alpha=0.01, steps=40, seed=seed),
    }
    curves: dict[str, list[dict[str, float]]] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name, make in attacks.items():
        def attack(folder: Path, name: str = name, make=make) -> dict[str, Any]:
            report, batch = evaluate_attack(make(0.3), x, y, name=name, device=device, progress=progress)
            adversarial_grid(folder / "grid.png", batch, title=f"{name.upper()} eps=0.3 on the demo cnn-small")
            curve = eps_curve(make, EPS_VALUES, x, y, device=device, progress=progress)
            return {"report": report.to_dict(), "eps_curve": curve}

        result = _part(out, name, attack, log)
        reports[name], curves[name] = result["report"], result["eps_curve"]

    def linear(folder: Path) -> dict[str, Any]:
        # The FGSM paper's linear result: softmax regression, eps = 0.25, the full test set.
        report, batch = evaluate_attack(FGSM(load("mnist/softmax", device=device), eps=0.25), x_test, y_test,
                                        name="fgsm-softmax", device=device, progress=progress)
        adversarial_grid(folder / "grid.png", batch, title="FGSM eps=0.25 on mnist/softmax")
        return {"report": report.to_dict()}

    softmax = _part(out, "softmax-fgsm", linear, log)
    eps_curve_plot(out / "eps_curve.png", {k.upper(): v for k, v in curves.items()},
                   title="demo cnn-small: robust accuracy against eps (L-inf)")
    summary = {"clean_test_acc": trained["clean_test_acc"], "attacks": reports, "eps_curves": curves,
               "softmax_fgsm_eps_0.25": softmax["report"], "torch": torch.__version__}
    atomic_write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(summary_markdown(summary))
    log((out / "summary.md").read_text())
    from alva.report.html import write_report
    log(f"wrote {write_report(out)} (open it in a browser)")
    return summary


def summary_markdown(summary: dict[str, Any]) -> str:
    rows = ["| attack | eps | clean acc | robust acc | success rate | confidence (misclassified) |",
            "|---|---|---|---|---|---|"]
    for name, r in summary["attacks"].items():
        rows.append(f"| {name.upper()} | 0.3 | {r['clean_acc']:.4f} | {r['robust_acc']:.4f} | "
                    f"{r['success_rate']:.4f} | {r['confidence_misclassified']:.4f} |")
    s = summary["softmax_fgsm_eps_0.25"]
    return "\n".join([
        "# alva demo", "",
        f"Small CNN (cnn-small) trained here: clean test accuracy {summary['clean_test_acc']:.4f}.", "",
        *rows, "",
        f"FGSM paper, linear model: shipped mnist/softmax, FGSM eps 0.25, {s['n']} test images: "
        f"error {s['adv_error']:.4f}, mean confidence on misclassified {s['confidence_misclassified']:.4f} "
        "(paper: 0.999 and 0.793).", "",
        "Pictures: eps_curve.png, fgsm/grid.png, pgd/grid.png, softmax-fgsm/grid.png", "",
    ])
