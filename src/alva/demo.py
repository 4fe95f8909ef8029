"""The main job: every capability of alva in one run, with results and pictures per part (:data:`PARTS`, in
order; :func:`capability_rows` says what each does).

Every part writes ``OUT/<part>/result.json`` when it finishes; a rerun skips finished parts (and the long ones
go on from their own saved state), so stopping the demo loses at most the part under way. The run ends with
``OUT/summary.md``, ``OUT/summary.json`` (a row per capability) and ``OUT/report.html``.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alva.attacks import FGSM, PGD, DifferentialEvolution, SparseConfident, sparse_summary
from alva.attacks.generator_attacks import AdvGANAttack, advgan_summary
from alva.attacks.multilabel import NaiveBCE, SingleLabelFlip
from alva.data import fixed_subset, load_mnist
from alva.data.multilabel import make_multilabel_mnist
from alva.evaluation import eps_curve, evaluate_attack
from alva.evaluation.label_flips import attack_one_label, flip_curves
from alva.evaluation.strong import strong_evaluation
from alva.models import card, load, load_generator
from alva.report import adversarial_grid, eps_curve_plot, sparse_grid
from alva.results import Batch
from alva.tracking import atomic_write_json
from alva.training import ClassifierRun, TrainSettings, train_classifier
from alva.training.advgan import AdvGANSettings, train_advgan
from alva.training.augment import GenerationSettings, generate_dataset
from alva.training.convergence import ConvergenceSettings, converge

EPS_VALUES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)  # the last is the eps of the parts' attacks


def _part(out: Path, name: str, work: Callable[[Path], dict[str, Any]], log: Callable[[str], None]
          ) -> dict[str, Any]:
    """Run one part into ``out/name`` unless its ``result.json`` exists; the result is written with the part's
    kind (:data:`PART_KINDS`), so that ``alva report`` knows what it holds."""
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
    atomic_write_json(done, result, kind=PART_KINDS.get(name, "demo-part"))
    log(f"[{name}] done in {result['seconds']} s")
    return result


@dataclass(frozen=True)
class Budgets:
    """How much work each of the later parts does; :data:`FULL` for ``alva demo``, :data:`QUICK` for ``--quick``."""

    strong_n: int = 200  # images of the strong evaluation
    strong_version: str = "quick"
    sparse_per_class: int = 4  # sparse images per target class
    sparse_max_pixels: int = 30
    sparse_steps: int = 1000
    de_pixels: int = 3
    de_n: int = 100  # images of the few-pixel attack
    de_popsize: int = 200
    de_generations: int = 40
    alva_n: int = 1000  # latent vectors attacked with ALVA
    converge_n: int = 2000  # latent vectors generated for the convergence round
    converge_n_eval: int = 500
    converge_train_size: int = 10000
    advgan_train_size: int = 5000
    advgan_width: int = 8
    advgan_n_eval: int = 500
    label_n: int = 200
    label_eps: tuple[float, ...] = (0.1, 0.2, 0.3)
    label_steps: int = 20
    adv_train_size: int = 10000
    adv_epochs: int = 2
    adv_eps: float = 0.1
    adv_eval_size: int = 500


FULL = Budgets()
QUICK = Budgets(strong_n=20, sparse_per_class=2, sparse_steps=400, de_n=20, de_popsize=20, de_generations=3,
                alva_n=60, converge_n=60, converge_n_eval=60, converge_train_size=500, advgan_train_size=300,
                advgan_n_eval=50, label_n=30, label_eps=(0.1, 0.3), label_steps=5, adv_train_size=500, adv_epochs=1,
                adv_eval_size=50)
PARTS = ("train", "fgsm", "pgd", "softmax-fgsm", "strong-eval", "sparse", "de", "alva", "converge", "advgan",
         "label-flip", "adv-train")
# What each part's result.json holds (its "kind"); the other parts are "demo-part": figures of their own.
PART_KINDS = {"fgsm": "attack-summary", "pgd": "attack-summary", "softmax-fgsm": "attack-summary",
              "de": "attack-summary", "strong-eval": "strong-eval", "sparse": "sparse-result"}


def demo_command(*, out: str | Path = "runs/demo", epochs: int = 2, n_eval: int = 1000, seed: int = 0,
                 train_size: int | None = None, quick: bool = False, progress: bool = True,
                 data_root: str | None = None, device: str = "cpu") -> str:
    """The ``alva demo`` command line that runs the demo with these settings: the options that differ from the
    defaults, as a user types them (``alva demo`` alone for the defaults)."""
    given = {"--out": (str(out), "runs/demo"), "--epochs": (epochs, 2), "--n": (n_eval, 1000), "--seed": (seed, 0),
             "--train-size": (train_size, None), "--device": (device, "cpu"), "--data-root": (data_root, None)}
    words = ["alva", "demo"] + [f"{k} {shlex.quote(str(v))}" for k, (v, default) in given.items() if v != default]
    return " ".join(words + ["--quick"] * quick + ["--no-progress"] * (not progress))


def run_demo(out: str | Path = "runs/demo", *, epochs: int = 2, n_eval: int = 1000, seed: int = 0,
             train_size: int | None = None, quick: bool = False,
             progress: bool = True, data_root: str | None = None, device: str = "cpu",
             log: Callable[[str], None] = print, command: str | None = None) -> dict[str, Any]:
    """Run the demo into ``out`` and return its summary (also written to ``out/summary.json`` and ``.md``).

    ``quick`` runs the parts after ``softmax-fgsm`` on tiny budgets (:data:`QUICK`): a smoke test, not results.
    ``command`` is the command line that started the run, as the user typed it (shown in the report's header;
    default: the options given here, spelled as ``alva demo`` options).
    """
    if command is None:
        command = demo_command(out=out, epochs=epochs, n_eval=n_eval, seed=seed, train_size=train_size, quick=quick,
                               progress=progress, data_root=data_root, device=device)
    out = Path(out)
    b = QUICK if quick else FULL
    x_test, y_test = load_mnist("test", data_root)
    x, y = fixed_subset(x_test, y_test, n_eval, seed=seed)

    def part(name: str, work: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        number = f"({PARTS.index(name) + 1}/{len(PARTS)}) "
        return _part(out, name, work, lambda line: log(number + line if line.startswith("[") else line))

    def train(folder: Path) -> dict[str, Any]:
        run = ClassifierRun(model="cnn-small", out=str(folder), settings=TrainSettings(epochs=epochs, seed=seed),
                            train_size=train_size, device=device, data_root=data_root)
        train_classifier(run, resume=True, progress=progress,
                         command=f"alva demo --epochs {epochs} --seed {seed}")
        return {"model": str(folder), "clean_test_acc": card(folder)["clean_test_accuracy"]}

    trained = part("train", train)
    model = load(trained["model"], device=device)
    attacks = {
        "fgsm": lambda eps: FGSM(model, eps=eps),
        "pgd": lambda eps: PGD(model, eps=eps, alpha=0.01, steps=40, seed=seed),
    }
    curves: dict[str, list[dict[str, float]]] = {}
    reports: dict[str, dict[str, Any]] = {}
    for name, make in attacks.items():
        def attack(folder: Path, name: str = name, make=make) -> dict[str, Any]:
            report, batch = evaluate_attack(make(EPS_VALUES[-1]), x, y, name=name, device=device, progress=progress)
            adversarial_grid(folder / "grid.png", batch, title=f"{name.upper()} eps=0.3 on the demo cnn-small")
            # the point at eps 0.3 is the attack just run (same seed, same batches): the same figures, not run again
            curve = eps_curve(make, EPS_VALUES[:-1], x, y, device=device, progress=progress)
            curve.append({"eps": EPS_VALUES[-1], "robust_acc": report.robust_acc, "adv_error": report.adv_error,
                          "confidence_misclassified": report.confidence_misclassified})
            eps_curve_plot(folder / "eps_curve.png", {name.upper(): curve},
                           title=f"demo cnn-small: {name.upper()} robust accuracy against eps (L-inf)")
            return {"report": report.to_dict(), "eps_curve": curve}

        result = part(name, attack)
        reports[name], curves[name] = result["report"], result["eps_curve"]

    def linear(folder: Path) -> dict[str, Any]:
        # The FGSM paper's linear result: softmax regression, eps = 0.25, the full test set.
        report, batch = evaluate_attack(FGSM(load("mnist/softmax", device=device), eps=0.25), x_test, y_test,
                                        name="fgsm-softmax", device=device, progress=progress)
        adversarial_grid(folder / "grid.png", batch, title="FGSM eps=0.25 on mnist/softmax")
        return {"report": report.to_dict()}

    softmax = part("softmax-fgsm", linear)
    eps_curve_plot(out / "eps_curve.png", {k.upper(): v for k, v in curves.items()},
                   title="demo cnn-small: robust accuracy against eps (L-inf)")

    def strong(folder: Path) -> dict[str, Any]:
        robust = load("mnist/cnn-small-pgd", device=device)
        xs, ys = fixed_subset(x_test, y_test, b.strong_n, seed=seed)
        result = strong_evaluation(robust, xs, ys, 0.3, version=b.strong_version, seed=seed, device=device,
                                   progress=progress, warn=False, state_dir=folder, resume=True,
                                   log=lambda line: log(f"  {line}"))
        with torch.no_grad():
            clean, adv = robust(xs.to(device)), robust(result.x_adv.to(device))
        adversarial_grid(folder / "grid.png", Batch.from_logits(xs, result.x_adv, ys, clean, adv),
                         title=f"strong evaluation of mnist/cnn-small-pgd (L-inf eps 0.3, {b.strong_version}): "
                               f"robust accuracy {result.robust_acc:.2f}")
        return {"model": "mnist/cnn-small-pgd", **result.to_dict()}

    def sparse(folder: Path) -> dict[str, Any]:
        target_model = load("mnist/cnn-small", device=device)
        # Random starts (uniform noise, one per image): the images of a class differ, where the blank start
        # would give the same image every time.
        attack = SparseConfident(target_model, confidence=0.9, max_pixels=b.sparse_max_pixels,
                                 steps=b.sparse_steps, start="uniform", seed=seed)
        targets = torch.arange(10, device=device).repeat_interleave(b.sparse_per_class)
        result = attack.generate(targets)
        sparse_grid(folder / "grid.png", result, title="sparse confident images of mnist/cnn-small (L1 method)")
        settings = {"method": "l1", "start": "uniform", "confidence": 0.9, "max_pixels": b.sparse_max_pixels,
                    "steps": b.sparse_steps, "n_per_class": b.sparse_per_class}
        return {"model": "mnist/cnn-small", "settings": settings, "summary": sparse_summary(result)}

    def de(folder: Path) -> dict[str, Any]:
        target_model = load("mnist/cnn-small", device=device)
        attack = DifferentialEvolution(target_model, b.de_pixels, b.de_popsize, b.de_generations, seed=seed)
        xs, ys = fixed_subset(x_test, y_test, b.de_n, seed=seed)
        report, batch = evaluate_attack(attack, xs, ys, name=f"de-{b.de_pixels}px", device=device, progress=progress)
        adversarial_grid(folder / "grid.png", batch, title=f"{b.de_pixels}-pixel attack (differential evolution) on "
                                                           "mnist/cnn-small")
        return {"model": "mnist/cnn-small", "budget": attack.budget, "report": report.to_dict(),
                "settings": {"pixels": b.de_pixels, "popsize": b.de_popsize, "generations": b.de_generations}}

    def alva_part(folder: Path) -> dict[str, Any]:
        generation = GenerationSettings(n=b.alva_n, eps=0.5, seed=seed, keep="all")
        summary = generate_dataset(load_generator("mnist/acwgan-gp", device=device),
                                   load("mnist/cnn-small", device=device), load("mnist/mlp", device=device),
                                   folder, generation, device=device, progress=progress)
        return {"generator": "mnist/acwgan-gp", "classifier": "mnist/cnn-small", "oracle": "mnist/mlp",
                "latent_eps": 0.5, **{k: v for k, v in summary.items() if not isinstance(v, (dict, list))}}

    def convergence(folder: Path) -> dict[str, Any]:
        train_data = fixed_subset(*load_mnist("train", data_root), b.converge_train_size, seed=seed)
        test = load_mnist("test", data_root)
        settings = ConvergenceSettings(rounds=1, n_eval=b.converge_n_eval,
                                       generation=GenerationSettings(n=b.converge_n, eps=0.5, seed=seed),
                                       training=TrainSettings(epochs=1, lr=5e-4, seed=seed))
        history = converge(load("mnist/cnn-small"), load_generator("mnist/acwgan-gp"), load("mnist/mlp"),
                           train_data, test, fixed_subset(*test, min(500, b.converge_n_eval), seed=seed), folder,
                           settings, progress=progress, log=lambda line: log(f"  {line}"))
        return {"rounds": [{"round": h["round"], **h.get("metrics", {})} for h in history]}

    def advgan(folder: Path) -> dict[str, Any]:
        target_model = load("mnist/cnn-small", device=device)
        data = fixed_subset(*load_mnist("train", data_root), b.advgan_train_size, seed=seed)
        settings = AdvGANSettings(epochs=1, width=b.advgan_width, seed=seed)
        generator, _ = train_advgan(target_model, data, 0.3, settings, out=folder / "generator", resume=True,
                                    device=device, progress=progress, card={"target_model": "mnist/cnn-small"})
        xs, ys = fixed_subset(x_test, y_test, b.advgan_n_eval, seed=seed)
        xs, ys = xs.to(device), ys.to(device)
        result = AdvGANAttack(target_model, generator, 0.3, seed=seed)(xs, ys)
        summary = advgan_summary(result, xs, ys, load("mnist/mlp", device=device))
        adversarial_grid(folder / "grid.png", Batch.from_logits(xs, result.x_adv, ys, result.clean_logits,
                                                                result.adv_logits),
                         title=f"AdvGAN (width {b.advgan_width}, 1 epoch) eps=0.3 vs mnist/cnn-small: success "
                               f"{summary['success']:.1%}")
        return {"model": "mnist/cnn-small", "eps": 0.3, "oracle": "mnist/mlp", "train_size": b.advgan_train_size,
                **summary}

    def label_flip(folder: Path) -> dict[str, Any]:
        multi = load("mnist-multilabel/cnn-gmp", device=device)
        xs, _ = make_multilabel_mnist("test", b.label_n, seed=seed, root=data_root)
        rows = []
        for eps in b.label_eps:
            for name, loss, early_stop in (("naive PGD", NaiveBCE(), False),
                                           ("single-label", SingleLabelFlip(1.0), True)):
                pgd = PGD(multi, eps=eps, steps=b.label_steps, loss=loss, target="positive", early_stop=early_stop,
                          seed=seed)
                rows.append({"attack": name, "eps": eps, **attack_one_label(pgd, xs.to(device))})
                log(f"  {name:13s} eps {eps:.2f}  success {rows[-1]['success']:.3f}  "
                    f"collateral {rows[-1]['collateral']:.3f}")
        eps_curve_plot(folder / "flips.png", flip_curves(rows, ("success", "collateral")), metric="rate",
                       title="mnist-multilabel/cnn-gmp: flip one positive label")
        return {"model": "mnist-multilabel/cnn-gmp", "n": b.label_n, "steps": b.label_steps, "rows": rows}

    def adv_train(folder: Path) -> dict[str, Any]:
        eps = b.adv_eps
        run = ClassifierRun(model="cnn-small", out=str(folder), settings=TrainSettings(epochs=b.adv_epochs, seed=seed),
                            objective="fast", objective_settings={"eps": eps, "eval_size": b.adv_eval_size},
                            train_size=b.adv_train_size, device=device, data_root=data_root)
        robust = train_classifier(run, resume=True, progress=progress,
                                  command=f"alva train --adv fast --eps {eps} --epochs {b.adv_epochs} --train-size "
                                          f"{b.adv_train_size}")
        xs, ys = fixed_subset(x_test, y_test, min(n_eval, 200), seed=seed)
        report, batch = evaluate_attack(PGD(robust, eps=eps, alpha=0.01, steps=40, seed=seed), xs, ys,
                                        name="pgd", device=device, progress=progress)
        adversarial_grid(folder / "grid.png", batch, title=f"PGD eps={eps} on cnn-small after {b.adv_epochs} "
                                                           "epoch(s) of fast adversarial training")
        # the same attack on the demo's normally trained cnn-small, for comparison
        plain, _ = evaluate_attack(PGD(model, eps=eps, alpha=0.01, steps=40, seed=seed), xs, ys, name="pgd",
                                   device=device, progress=progress)
        return {"objective": f"fast (FGSM with random start), eps {eps}", "eps": eps, "epochs": b.adv_epochs,
                "train_size": b.adv_train_size, "clean_test_acc": card(folder)["clean_test_accuracy"],
                "pgd40_robust_acc": report.robust_acc, "pgd40_robust_acc_of_demo_cnn_small": plain.robust_acc,
                "pgd40": report.to_dict()}

    extra = {name: part(name, work) for name, work in (
        ("strong-eval", strong), ("sparse", sparse), ("de", de), ("alva", alva_part), ("converge", convergence),
        ("advgan", advgan), ("label-flip", label_flip), ("adv-train", adv_train))}
    summary = {"clean_test_acc": trained["clean_test_acc"], "attacks": reports, "eps_curves": curves,
               "softmax_fgsm_eps_0.25": softmax["report"], "capabilities": capability_rows(trained, reports, softmax,
                                                                                           extra),
               "quick": quick, "torch": torch.__version__, "threads": torch.get_num_threads(), "command": command,
               "parts": list(PARTS)}
    atomic_write_json(out / "summary.json", summary, kind="demo-summary")
    (out / "summary.md").write_text(summary_markdown(summary))
    log((out / "summary.md").read_text())
    from alva.report.html import write_report
    log(f"wrote {write_report(out)} (open it in a browser)")
    return summary


def capability_rows(trained: dict[str, Any], reports: dict[str, dict[str, Any]], softmax: dict[str, Any],
                    extra: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per part: what ran, on which model, its key figure and the part's time."""
    s, de, sp = extra["strong-eval"], extra["de"], extra["sparse"]["summary"]["overall"]
    conv = extra["converge"]["rounds"]
    label = {r["attack"]: r for r in extra["label-flip"]["rows"] if r["eps"] == max(x["eps"] for x in
                                                                                  extra["label-flip"]["rows"])}
    adv = extra["adv-train"]
    return [
        {"part": "train", "capability": "train a classifier", "model": "cnn-small (demo)",
         "result": f"clean test acc {trained['clean_test_acc']:.4f}"},
        *[{"part": name, "capability": f"{name.upper()} attack, eps curve", "model": "cnn-small (demo)",
           "result": f"robust acc at eps 0.3 {r['robust_acc']:.4f}"} for name, r in reports.items()],
        {"part": "softmax-fgsm", "capability": "FGSM paper's linear result", "model": "mnist/softmax",
         "result": f"error at eps 0.25 {softmax['report']['adv_error']:.4f}"},
        {"part": "strong-eval", "capability": f"strong evaluation ({s['settings'].get('version', '')})",
         "model": "mnist/cnn-small-pgd", "result": f"robust acc at eps 0.3 {s['robust_acc']:.4f} "
                                                   f"(clean {s['clean_acc']:.4f}, n {s['n']})"},
        {"part": "sparse", "capability": "sparse confident images", "model": "mnist/cnn-small",
         "result": f"success {sp['success_rate']:.4f}, mean L0 {sp['l0']:.1f}"},
        {"part": "de", "capability": f"{de['settings']['pixels']}-pixel attack (differential evolution)",
         "model": "mnist/cnn-small",
         "result": f"success {de['report']['success_rate']:.4f}"},
        {"part": "alva", "capability": "ALVA (shipped generator)", "model": "mnist/acwgan-gp vs mnist/cnn-small",
         "result": f"success {extra['alva'].get('success', float('nan')):.4f}, "
                   f"valid adversarial {extra['alva'].get('valid_adversarial', float('nan')):.4f}"},
        {"part": "converge", "capability": "convergence training (1 round)", "model": "mnist/cnn-small (copy)",
         "result": "ALVA success " + " -> ".join(f"{r.get('alva_success', float('nan')):.4f}" for r in conv)},
        {"part": "advgan", "capability": "generator attack (AdvGAN)", "model": "mnist/cnn-small",
         "result": f"success {extra['advgan']['success']:.4f}"},
        {"part": "label-flip", "capability": "single-label attack (multi-label)", "model": "mnist-multilabel/cnn-gmp",
         "result": ", ".join(f"{k} success {v['success']:.3f} collateral {v['collateral']:.3f}"
                             for k, v in label.items())},
        {"part": "adv-train", "capability": f"adversarial training (fast FGSM, {adv['epochs']} epoch(s))",
         "model": "cnn-small", "result": f"clean acc {adv['clean_test_acc']:.4f}, PGD-40 robust acc at eps "
                                         f"{adv['eps']} {adv['pgd40_robust_acc']:.4f} (demo cnn-small: "
                                         f"{adv['pgd40_robust_acc_of_demo_cnn_small']:.4f})"},
    ]


def summary_markdown(summary: dict[str, Any]) -> str:
    rows = ["| attack | eps | clean acc | robust acc | success rate | confidence (misclassified) |",
            "|---|---|---|---|---|---|"]
    for name, r in summary["attacks"].items():
        rows.append(f"| {name.upper()} | 0.3 | {r['clean_acc']:.4f} | {r['robust_acc']:.4f} | "
                    f"{r['success_rate']:.4f} | {r['confidence_misclassified']:.4f} |")
    s = summary["softmax_fgsm_eps_0.25"]
    capabilities = ["| part | capability | model | result |", "|---|---|---|---|"]
    capabilities += [f"| {r['part']} | {r['capability']} | {r['model']} | {r['result']} |"
                     for r in summary.get("capabilities", [])]
    return "\n".join([
        "# alva demo", "",
        *(["(--quick: tiny budgets, a smoke test; the figures are not results)", ""] if summary.get("quick") else []),
        *capabilities, "",
        f"Small CNN (cnn-small) trained here: clean test accuracy {summary['clean_test_acc']:.4f}.", "",
        *rows, "",
        f"FGSM paper, linear model: shipped mnist/softmax, FGSM eps 0.25, {s['n']} test images: "
        f"error {s['adv_error']:.4f}, mean confidence on misclassified {s['confidence_misclassified']:.4f} "
        "(paper: 0.999 and 0.793).", "",
        "Pictures: eps_curve.png and each part's grid.png (label-flip/flips.png, converge/rounds.png); "
        "all of them in report.html.", "",
    ])
