"""Readers of the result files of attacks and evaluations: each turns one JSON file into text and tables of a
:class:`~alva.report.content.Section`. All take ``(section, name, data, folder)``; :mod:`alva.report.kinds` picks
the reader from the file's ``"kind"``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alva.report.content import Section, Table, flatten, fmt, is_number, label, settings_text, subsample

__all__ = ["attack_summary", "demo_summary", "generic", "profile", "sparse_result", "strong_eval"]

MAX_COLUMNS = 10
MAX_ROWS = 30
SETTINGS_KEYS = ("settings", "arguments", "config")


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _attack_tables(section: Section, report: Mapping[str, Any], what: str) -> None:
    figures = {k: report.get(k) for k in ("n", "clean_acc", "robust_acc", "adv_error", "success_rate",
                                          "confidence_misclassified", "mean_steps", "mean_queries")}
    figures.update({f"mean {k} norm of the perturbation": v for k, v in (report.get("norms") or {}).items()})
    section.add_figures(f"{what}: key figures", figures)
    per_class = report.get("per_class") or {}
    if isinstance(per_class, Mapping) and per_class:
        columns = [c for c in ("n", "clean_acc", "robust_acc", "success_rate")
                   if any(isinstance(v, Mapping) and c in v for v in per_class.values())]
        rows = [[k, *[v.get(c) for c in columns]] for k, v in per_class.items() if isinstance(v, Mapping)]
        section.tables.append(Table(f"{what}: per true class", ["class", *map(label, columns)], rows, folded=True))


def _minimum_norm_table(section: Section, figures: Mapping[str, Any], what: str) -> None:
    """The figures of a minimum-norm attack: the size of its smallest perturbations (the curve is an eps table)."""
    norm = figures.get("norm", "")
    section.text.append(f"{what} is a minimum-norm attack ({norm}): it finds each image's smallest adversarial "
                        "perturbation, so one run gives the robust accuracy at every eps.")
    names = {"success_rate": "success rate", "median": f"median {norm} distance (successes)",
             "mean": f"mean {norm} distance (successes)", "median_all": f"median {norm} distance (all images)"}
    section.add_figures(f"{what}: smallest perturbations", {names[k]: figures.get(k) for k in names})


def _settings(section: Section, settings: Mapping[str, Any], caption: str = "settings") -> None:
    """A command's recorded arguments as its command line; settings of a library call (no ``command``) as a
    folded table."""
    if settings.get("command"):
        section.command = section.command or settings_text(settings)
    elif settings:
        section.add_figures(caption, flatten(settings), settings=True, folded=True)


def _eps_table(section: Section, curves: Mapping[str, Sequence[Mapping[str, Any]]], caption: str) -> None:
    eps = sorted({float(p["eps"]) for c in curves.values() for p in c if "eps" in p})
    if not eps:
        return
    values = {name: {float(p["eps"]): p.get("robust_acc") for p in c if "eps" in p} for name, c in curves.items()}
    rows = [[e, *[values[name].get(e) for name in curves]] for e in eps]
    section.tables.append(Table(caption, ["eps", *[f"{name} robust acc" for name in curves]], rows))


def demo_summary(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """``summary.json`` of ``alva demo``: the row per part, the attacks at eps 0.3, the eps curves."""
    section.kind = "demo"
    if data.get("command"):
        section.command = str(data["command"])
    attacks = data.get("attacks") or {}
    n = next((r.get("n") for r in attacks.values() if isinstance(r, Mapping)), None)
    section.text.append(
        f"Trained a small CNN (cnn-small) on MNIST: clean test accuracy {fmt(data.get('clean_test_acc'))}. "
        f"Attacked {fmt(n)} test images with {', '.join(a.upper() for a in attacks)} at L-inf eps 0.3 and swept "
        "eps; the sections below show each part, in the order the run made them.")
    capabilities = [r for r in data.get("capabilities") or [] if isinstance(r, Mapping)]
    if capabilities:
        if data.get("quick"):
            section.text.append("Run with --quick: tiny budgets, a smoke test; the figures are not results.")
        columns = ("part", "capability", "model", "result")
        section.tables.append(Table("every capability in one run (a section per part below)", list(columns),
                                    [[r.get(c) for c in columns] for r in capabilities]))
    columns = ("clean_acc", "robust_acc", "success_rate", "confidence_misclassified")
    rows = [[name.upper(), r.get("n"), *[r.get(c) for c in columns]] for name, r in attacks.items()
            if isinstance(r, Mapping)]
    section.tables.append(Table("attacks at eps 0.3 (L-inf)", ["attack", "n", *map(label, columns)], rows))
    _eps_table(section, {k.upper(): v for k, v in (data.get("eps_curves") or {}).items()},
               "robust accuracy against eps")
    s = data.get("softmax_fgsm_eps_0.25")
    if isinstance(s, Mapping):
        section.text.append("The FGSM paper's linear result (Goodfellow et al. 2015): FGSM at eps 0.25 on the "
                            "shipped softmax regression (mnist/softmax), the whole test set; the paper reports an "
                            "error of 0.999 and a mean confidence of 0.793 on the misclassified images.")
        section.tables.append(Table("FGSM eps 0.25 on mnist/softmax", ["figure", "value", "paper"], [
            ["n", s.get("n"), "10000"], ["adversarial error", s.get("adv_error"), "0.999"],
            ["confidence (misclassified)", s.get("confidence_misclassified"), "0.793"]]))
    if data.get("torch"):
        section.text.append(f"torch {data['torch']}.")


def attack_summary(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """An attack's figures on a test set (``alva attack``, ``alva one-pixel``, the demo's attack parts)."""
    report = _mapping(data.get("report"))
    settings = _mapping(data.get("settings"))
    section.kind = section.kind or "attack"
    what = str(report.get("attack", "attack")).upper()
    where = f" on {data['model']}" if data.get("model") else ""
    eps = settings.get("eps")
    minimum_norm = _mapping(report.get("minimum_norm"))
    budget = f" ({settings.get('norm', '')} eps {fmt(eps)})" if eps is not None and not minimum_norm else ""
    section.text.append(f"{what} attack{where}{budget} on {fmt(report.get('n'))} test images.")
    if minimum_norm:
        _minimum_norm_table(section, minimum_norm, what)
    _attack_tables(section, report, what)
    if data.get("eps_curve"):
        _eps_table(section, {what: data["eps_curve"]}, "robust accuracy against eps")
    if data.get("budget") is not None:
        section.tables.append(Table("budget", ["figure", "value"], [["queries per image", data["budget"]]]))
    _settings(section, settings)


def strong_eval(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """``result.json`` of a strong evaluation (``alva eval``, the demo's ``strong-eval`` part)."""
    section.kind = "strong evaluation"
    settings = data.get("settings") or {}
    section.text.append(
        f"Strong evaluation of {data.get('model', 'the model')}: {', '.join(settings.get('attacks', []))} in turn "
        f"({settings.get('norm', '')} eps {fmt(settings.get('eps'))}, version {settings.get('version', '')}) on "
        f"{fmt(data.get('n'))} test images; robust accuracy {fmt(data.get('robust_acc'))} "
        f"(clean {fmt(data.get('clean_acc'))}).")
    if isinstance(data.get("arguments"), Mapping):
        _settings(section, data["arguments"], "arguments")
    columns = ["attack", "robust_acc", "attacked", "broken", "seconds"]
    section.tables.append(Table("robust accuracy after each attack", list(map(label, columns)),
                                [[r.get(c) for c in columns] for r in data.get("table") or []
                                 if isinstance(r, Mapping)]))
    for warning in data.get("warnings") or []:
        section.text.append(f"Warning: {warning}")
    if isinstance(data.get("report"), Mapping):
        _attack_tables(section, data["report"], "strong evaluation")


def sparse_result(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """``result.json`` of ``alva sparse`` (and the demo's ``sparse`` part): overall and per-class figures."""
    section.kind = "sparse images"
    settings = data.get("settings") or {}
    summary = data.get("summary") or {}
    overall = summary.get("overall") or {}
    start = f", {settings['start']} start" if settings.get("start") else ""
    section.text.append(
        f"Sparse images that {data.get('model', 'the model')} assigns to chosen classes (method "
        f"{settings.get('method', '?')}{start}, confidence >= {fmt(settings.get('confidence'))}, at most "
        f"{fmt(settings.get('max_pixels'))} non-zero pixels): success rate {fmt(overall.get('success_rate'))}.")
    section.add_figures("overall", overall)
    columns = ["n", "success_rate", "target_prob", "l0", "l1"]
    section.tables.append(Table("per target class", ["class", *map(label, columns)],
                                [[k, *[v.get(c) for c in columns]] for k, v in (summary.get("per_class") or {}).items()
                                 if isinstance(v, Mapping)]))
    _settings(section, settings)


def profile(section: Section, name: str, data: Mapping[str, Any], folder: Path) -> None:
    """``profile.json`` of :mod:`alva.evaluation.profile`: one row of key figures per model."""
    section.kind = "robustness profile"
    models = {k: v for k, v in data.items() if isinstance(v, Mapping)}
    section.text.append(f"Robustness profile of {len(models)} model(s): accuracy under FGSM, PGD and the strong "
                        "evaluation, accuracy against eps, rubbish-image rate.")
    flat = {m: flatten(p, skip=("per_class", "strong_table", "accuracy_vs_eps")) for m, p in models.items()}
    columns = list(dict.fromkeys(k for f in flat.values() for k, v in f.items() if is_number(v)))
    section.tables.append(Table("key figures per model", ["model", *map(label, columns)],
                                [[m, *[f.get(c) for c in columns]] for m, f in flat.items()]))
    _eps_table(section, {m: p["accuracy_vs_eps"] for m, p in models.items()
                         if isinstance(p.get("accuracy_vs_eps"), list)}, "accuracy against eps")


def generic(section: Section, name: str, data: Any, folder: Path) -> None:
    """Any other JSON: the settings, the tables (lists of records) and the scalar figures it holds."""
    section.kind = section.kind or "results"
    if isinstance(data, list) and data and all(isinstance(r, Mapping) for r in data):
        data = {"records": data}
    if not isinstance(data, Mapping):
        return
    for key in SETTINGS_KEYS:
        if isinstance(data.get(key), Mapping):
            if data[key].get("command") and not section.command:
                section.command = settings_text(data[key])
            section.add_figures(f"{name}: {key}", flatten(data[key]), settings=True)
    rest = {k: v for k, v in data.items() if k not in SETTINGS_KEYS}
    for key, value in rest.items():
        if isinstance(value, list) and value and all(isinstance(r, Mapping) for r in value):
            records = [flatten(r) for r in value]
            columns = list(dict.fromkeys(k for r in records for k in r))[:MAX_COLUMNS]
            rows = [[r.get(c) for c in columns] for r in subsample(records, MAX_ROWS)]
            section.tables.append(Table(f"{name}: {label(key)}", list(map(label, columns)), rows))
    section.add_figures(f"{name}: figures", flatten(rest), settings=name.endswith("config.json"))
