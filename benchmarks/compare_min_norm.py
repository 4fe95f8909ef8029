"""alva's minimum-norm, L1 and L0 attacks against torchattacks, foolbox, ART and AutoAttack, on equal terms.

Every attack that a peer library also implements runs on the shipped ``mnist/cnn-small`` and
``mnist/cnn-small-pgd`` models (their normalisation is part of the model, so every library gets images in
[0, 1]) and the same fixed stratified subset of ``--n`` MNIST test images (seed 0). Each row gives the success
rate over the images the model classifies correctly, the median and mean norm of the successful perturbations
(measured here from ``x_adv - x``, in the attack's norm; L0 counts changed pixels, a pixel being all channels
of one location, changed meaning more than 1e-6), the wall-clock seconds of one run after a warm-up on 8
images, its process CPU seconds (the steadier measure on a shared machine), and the ratios of the seconds per
image, of the CPU seconds per image and of the median norm to the best peer's (the fastest peer, the peer of
smallest median norm). For the minimum-norm attacks the median that is compared counts the failures as
infinitely far (the radius at which half of the attacked images are broken; "inf" when fewer than half are),
so that a library cannot look better by giving up on the hard images; the attacks with a radius compare their
success rates. Every result is clipped to the box [0, 1] (a library that leaves it is named in its
row); a point counts as a success only if, for an attack with a radius, it is inside the ball; targeted rows
(JSMA) need the target class.

Groups and budgets (``--n 1000``; each peer row takes seconds to a few minutes on one CPU thread):

* ``cw-l2``: ``--binary-steps`` (5) x ``--inner-steps`` (100) steps, learning rate 0.1 (0.01 leaves the
  many MNIST pixels at 0 or 1, saturated in tanh space, nearly still in 100 steps), initial constant 1,
  confidence 0: alva ``cw``, foolbox ``L2CarliniWagnerAttack`` (Adam), ART ``CarliniL2Method`` (its own
  gradient descent with a line search of at most 5 halvings and 5 doublings). torchattacks ``CW`` has no
  binary search: one run of 5 x 100 Adam steps at the same constant, 1 (its default).
* ``deepfool-l2``, ``deepfool-linf``: ``--deepfool-steps`` (50), overshoot 0.02, all 10 classes: alva
  ``deepfool``, foolbox ``L2DeepFoolAttack`` / ``LinfDeepFoolAttack``, torchattacks ``DeepFool`` and ART
  ``DeepFool`` (L2 only; ART's overshoot is ``epsilon``).
* ``fab-linf``, ``fab-l2``, ``fab-l1``: untargeted, ``--steps`` (100) steps, 1 restart, alpha_max 0.1,
  eta 1.05, beta 0.9, no radius (the box's diameter): alva ``fab``, torchattacks ``FAB``, AutoAttack
  ``FABAttack_PT``.
* ``fmn-l0``, ``fmn-l1``, ``fmn-l2``, ``fmn-linf``: ``--steps`` (100) steps, the defaults otherwise:
  alva ``fmn``, foolbox ``L0FMNAttack`` .. ``LInfFMNAttack``.
* ``ddn-l2``: ``--steps`` (100) steps, initial epsilon 1, gamma 0.05: alva ``ddn``, foolbox ``DDNAttack``.
* ``ead-l1``: ``--binary-steps`` (5) x ``--inner-steps`` (100) steps, beta 1e-3, learning rate 0.01,
  initial constant 0.01, L1 decision rule: alva ``ead``, torchattacks ``EADL1``, foolbox ``EADAttack``, ART
  ``ElasticNet``.
* ``jsma-l0``: targeted at class (y + 1) mod 10 (torchattacks' choice for its default mode), theta 1,
  gamma 0.1: alva ``jsma``, torchattacks ``JSMA``, ART ``SaliencyMapMethod``.
* ``square-linf``, ``square-l2``: margin loss, ``--queries`` (1000) queries, p_init 0.8, 1 restart, radius
  ``--eps-linf`` (0.3) / ``--eps-l2`` (2.0): alva ``square``, torchattacks ``Square``, AutoAttack
  ``SquareAttack``, ART ``SquareAttack``.
* ``apgd-linf``, ``apgd-l2``, ``apgd-l1``: cross-entropy, ``--steps`` (100) steps, 1 restart, radius
  ``--eps-linf`` / ``--eps-l2`` / ``--eps-l1`` (10): alva ``apgd``, torchattacks ``APGD`` (no L1), AutoAttack
  ``APGDAttack``, ART ``AutoProjectedGradientDescent`` (initial step 2 eps).

The implementations that attack image by image or in numpy loops (torchattacks ``DeepFool`` and ``JSMA``,
ART ``CarliniL2Method`` and ``ElasticNet``: 0.2 to 1 CPU seconds per image) run on the first ``--slow-n`` (50)
images of the subset; their row says how many, and their time is compared per image.

alva's attacks are built from the registry (``alva.attacks.build(name, model, **settings)``); a setting that an
attack does not offer is left at its default and named in the output, and an attack that is not in the registry
is reported as not available. Optional dependencies (``pip install -e '.[bench]'``; torchattacks and
pyautoattack apart with ``pip install --no-deps torchattacks pyautoattack``): a library that is missing is
skipped with the reason printed.

Usage::

    python benchmarks/compare_min_norm.py [--n 1000] [--models mnist/cnn-small,mnist/cnn-small-pgd]
        [--attacks cw-l2,fab,...] [--libraries alva,torchattacks,foolbox,art,autoattack] [--slow-n 50]
        [--threads 1] [--json benchmarks/results/min_norm_peers.json]
    python benchmarks/compare_min_norm.py --report RESULTS.json [MORE.json ...]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from alva import models
from alva.attacks import REGISTRY, build
from alva.attacks.sparse import pixel_l0
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import SEED, keep_freed_memory, probe_libraries  # noqa: E402
from min_norm_methods import PEER_METHODS, SLOW, Method, Settings, alva_settings  # noqa: E402

MODELS = ("mnist/cnn-small", "mnist/cnn-small-pgd")
PEERS = ("torchattacks", "foolbox", "art", "autoattack")
LIBRARIES = ("alva", *PEERS)
L0_TOLERANCE = 1e-6
WARM_UP_IMAGES = 8


@dataclass(frozen=True)
class Group:
    """A row group: one attack in one norm, minimum-norm (``eps`` None) or within a radius."""

    name: str
    norm: str
    eps: float | None = None
    targeted: bool = False


def groups(eps: dict[str, float]) -> dict[str, Group]:
    """Every row group, with the radius ``eps[norm]`` of the attacks that have one."""
    rows = [Group("cw-l2", "l2"), Group("deepfool-l2", "l2"), Group("deepfool-linf", "linf"),
            *(Group(f"fab-{n}", n) for n in ("linf", "l2", "l1")),
            *(Group(f"fmn-{n}", n) for n in ("l0", "l1", "l2", "linf")),
            Group("ddn-l2", "l2"), Group("ead-l1", "l1"), Group("jsma-l0", "l0", targeted=True),
            *(Group(f"square-{n}", n, eps[n]) for n in ("linf", "l2")),
            *(Group(f"apgd-{n}", n, eps[n]) for n in ("linf", "l2", "l1"))]
    return {g.name: g for g in rows}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated zoo models")
    p.add_argument("--attacks", default="all", help="comma-separated groups or families (cw, fab, fmn-l0, ...)")
    p.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated subset of " + ",".join(LIBRARIES))
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--steps", type=int, default=100, help="steps of FAB, FMN, DDN and APGD (default 100)")
    p.add_argument("--binary-steps", type=int, default=5, help="binary-search steps of CW and EAD (default 5)")
    p.add_argument("--inner-steps", type=int, default=100, help="steps per binary step of CW and EAD (default 100)")
    p.add_argument("--deepfool-steps", type=int, default=50, help="DeepFool steps (default 50)")
    p.add_argument("--queries", type=int, default=1000, help="Square queries per image (default 1000)")
    p.add_argument("--eps-linf", type=float, default=0.3, help="L-inf radius of Square and APGD (default 0.3)")
    p.add_argument("--eps-l2", type=float, default=2.0, help="L2 radius of Square and APGD (default 2.0)")
    p.add_argument("--eps-l1", type=float, default=10.0, help="L1 radius of APGD (default 10)")
    p.add_argument("--slow-n", type=int, default=50,
                   help="images for the implementations that go image by image or in numpy (default 50)")
    p.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc as it is")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    p.add_argument("--report", type=Path, nargs="+", default=None, metavar="PATH",
                   help="measure nothing: print one table of the results that --json wrote to these files")
    args = p.parse_args(argv)
    known = groups({"linf": args.eps_linf, "l2": args.eps_l2, "l1": args.eps_l1})
    wanted = [s for s in args.attacks.split(",") if s]
    args.attacks = list(known) if wanted == ["all"] else [
        g for g in known if any(g == w or g.split("-")[0] == w for w in wanted)]
    args.models = [s for s in args.models.split(",") if s]
    args.libraries = [s for s in args.libraries.split(",") if s]
    if not args.attacks or set(args.libraries) - set(LIBRARIES):
        p.error(f"attacks among {list(known)} or their families, libraries among {LIBRARIES}")
    if min(args.n, args.threads, args.steps, args.binary_steps, args.inner_steps, args.deepfool_steps,
           args.queries) < 1:
        p.error("--n, --threads and the budgets must be >= 1")
    return args


def probe(wanted: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Versions of the libraries that import and the reasons of those that do not (AutoAttack is pyautoattack)."""
    versions, skipped = probe_libraries([w for w in wanted if w != "autoattack"])
    if "autoattack" in wanted:
        try:
            versions["autoattack"] = getattr(importlib.import_module("pyautoattack"), "__version__", "?")
        except Exception as err:  # noqa: BLE001 - any failure to import means: skip it, say why
            skipped["autoattack"] = f"{type(err).__name__}: {err}"
    return versions, skipped


# --------------------------------------------------------------------------------------------- measurement

def perturbation_norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample norm of ``delta``; ``l0`` counts changed pixels (any channel of a location)."""
    if norm == "l0":
        return pixel_l0(delta, zero_tol=L0_TOLERANCE).float()
    flat = delta.flatten(1).abs()
    return {"l1": flat.sum(1), "l2": flat.norm(dim=1), "linf": flat.amax(1)}[norm]


@torch.no_grad()
def score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, x_adv: torch.Tensor,
          group: Group) -> dict:
    """Success rate over the clean-correct images and the norms of the successful perturbations.

    ``x_adv`` is clipped to the box first; ``out_of_box`` counts the points that were outside it by more than
    1e-5 and ``box_excess`` is the largest excess.
    """
    x_adv = x_adv.detach().to(x.dtype).reshape(x.shape)
    excess = torch.maximum(-x_adv, x_adv - 1).flatten(1).amax(1).clamp(min=0)
    x_adv = x_adv.clamp(0.0, 1.0)
    norms = perturbation_norms(x_adv - x, group.norm)
    pred = model(x_adv).argmax(1)
    valid = torch.ones_like(pred, dtype=torch.bool)
    if group.eps is not None:
        valid &= norms <= group.eps * (1 + 1e-4) + 1e-6
    reached = pred == target if target is not None else pred != y
    attacked = model(x).argmax(1) == y
    success = reached & valid & attacked
    found = norms[success]
    all_distances = torch.where(success, norms, torch.full_like(norms, float("inf")))[attacked]
    return {"attacked": int(attacked.sum()), "success": int(success.sum()),
            "success_rate": success.sum().item() / max(1, int(attacked.sum())),
            "outside_ball": int((reached & attacked & ~valid).sum()), "out_of_box": int((excess > 1e-5).sum()),
            "box_excess": excess.max().item(),
            "median_norm": found.median().item() if len(found) else None,
            "mean_norm": found.mean().item() if len(found) else None,
            "median_norm_failures_inf": all_distances.median().item() if len(all_distances) else None}


def timed(method: Method, *inputs: torch.Tensor | None) -> tuple[torch.Tensor, float, float]:
    """``method(*inputs)`` with its wall-clock and process CPU seconds, the random numbers seeded."""
    gc.collect()
    torch.manual_seed(SEED)
    start, start_cpu = time.perf_counter(), time.process_time()
    x_adv = method(*inputs)
    return x_adv, time.perf_counter() - start, time.process_time() - start_cpu


def add_ratios(rows: list[dict], group_info: dict[str, Group]) -> None:
    """Wall-clock and CPU seconds per image and the median norm of each row relative to the best peer's of its
    model and group (the peers that broke at least one image).

    The norm ratio compares medians over all attacked images with the failures counted as infinitely far (the
    radius at which half of them are broken), so that giving up on the hard images does not look like smaller
    perturbations; it is left out for the attacks with a radius, where the success rate is the measure.
    """
    for row in rows:
        peers = [r for r in rows if r["model"] == row["model"] and r["group"] == row["group"]
                 and r["library"] != "alva" and r.get("success")]
        for key, ratio in (("seconds", "time_ratio"), ("cpu_seconds", "cpu_ratio")):
            best = min((r[key] / r["images"] for r in peers), default=None)
            row[ratio] = row[key] / row["images"] / best if best and key in row else None
        medians = [r["median_norm_failures_inf"] for r in peers if r["median_norm_failures_inf"] is not None]
        best_median = min(medians, default=None)
        mine = row.get("median_norm_failures_inf")
        finite = best_median is not None and 0 < best_median < float("inf") and mine is not None
        row["norm_ratio"] = mine / best_median if finite and group_info[row["group"]].eps is None else None


# --------------------------------------------------------------------------------------------- methods

def alva_method(group: Group, model: nn.Module, settings: Settings) -> tuple[Method | None, str]:
    """alva's attack of ``group`` from the registry, or None with the reason; the note names dropped settings."""
    name, wanted = alva_settings(group.name, group.eps, settings)
    if name not in REGISTRY:
        return None, f"not available: no attack {name!r} in alva's registry"
    offered = {o.name for o in REGISTRY[name].options}
    try:
        attack = build(name, model, **{k: v for k, v in wanted.items() if k in offered})
    except Exception as err:  # noqa: BLE001 - a registered attack that cannot be built is reported, not fatal
        return None, f"not available: {type(err).__name__}: {err}"
    dropped = sorted(set(wanted) - offered - {"seed"})  # the seed is passed where the attack takes one
    return (lambda x, y, target: attack(x, y, target=target).x_adv), (
        f"settings not offered (defaults used): {', '.join(dropped)}" if dropped else "")


def methods_for(group: Group, model: nn.Module, libs: list[str], settings: Settings) -> dict[str, Method | str]:
    """The method of each library for ``group``; a string says why a library has none."""
    out: dict[str, Method | str] = {}
    for lib in libs:
        if lib == "alva":
            method, note = alva_method(group, model, settings)
            out[lib] = method if method is not None else note
            if method is not None and note:
                out["alva-note"] = note
            continue
        factory = PEER_METHODS[lib](model, settings).get(group.name)
        if factory is not None:
            out[lib] = factory()
    return out


def run_group(group: Group, model_name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              libs: list[str], versions: dict[str, str], settings: Settings) -> list[dict]:
    target = (y + 1) % 10 if group.targeted else None
    rows = []
    methods = methods_for(group, model, libs, settings)
    note = methods.pop("alva-note", "")
    for lib, method in methods.items():
        row: dict = {"model": model_name, "group": group.name, "library": lib, "version": versions.get(lib, "?")}
        k = min(len(x), settings.slow_n) if (lib, group.name) in SLOW else len(x)
        xs, ys, ts = x[:k], y[:k], None if target is None else target[:k]
        try:
            if isinstance(method, str):
                raise LookupError(method)
            method(xs[:WARM_UP_IMAGES], ys[:WARM_UP_IMAGES], None if ts is None else ts[:WARM_UP_IMAGES])
            x_adv, seconds, cpu = timed(method, xs, ys, ts)
        except Exception as err:  # noqa: BLE001 - a library that fails is reported in its row, the others run
            reason = str(err) if isinstance(err, LookupError) else f"failed: {type(err).__name__}: {err}"
            print(f"  {model_name} {group.name} {lib}: {reason}", file=sys.stderr, flush=True)
            rows.append({**row, "note": reason})
            continue
        row.update(score(model, xs, ys, ts, x_adv, group), images=k, seconds=seconds, cpu_seconds=cpu,
                   note=note if lib == "alva" else "")
        print(f"  {model_name} {group.name} {lib:<12} {seconds:8.1f} s  success {row['success_rate']:.3f}  "
              f"median {row['median_norm']}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------- report

def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def table(rows: list[dict], group_info: dict[str, Group]) -> str:
    """The Markdown table of ``rows`` (with ratios from :func:`add_ratios`)."""
    lines = ["| model | attack | library | images | success | median norm | mean norm | median, failures inf "
             "| seconds | CPU seconds | time / best peer | CPU time / best peer | median, failures inf / best peer |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        g = group_info[r["group"]]
        attack = r["group"] + ("" if g.eps is None else f" (eps {g.eps:g})")
        library = f"{r['library']} {r['version']}"
        if "seconds" not in r:
            lines.append(f"| {r['model']} | {attack} | {library} | | {r['note']} | | | | | | | | |")
            continue
        library += f" ({r['note']})" if r.get("note") else ""
        if r.get("out_of_box"):
            library += f" ({r['out_of_box']} points outside [0, 1] by up to {r['box_excess']:.1g}, clipped)"
        lines.append(f"| {r['model']} | {attack} | {library} | {r['images']} | {r['success_rate']:.3f} "
                     f"| {_num(r['median_norm'])} | {_num(r['mean_norm'])} | {_num(r['median_norm_failures_inf'])} "
                     f"| {r['seconds']:.1f} "
                     f"| {r['cpu_seconds']:.1f} | {_num(r['time_ratio'], 3)} | {_num(r['cpu_ratio'], 3)} "
                     f"| {_num(r['norm_ratio'], 3)} |")
    return "\n".join(lines)


def header(env: dict, n: int) -> str:
    return (f"{env['date']}; torch {env['torch']}, {env['threads']} thread(s), Python {env['python']}, "
            f"{env['machine']}; malloc: {env['malloc']}\nlibraries: "
            + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
            + "".join(f"; {k} skipped ({v})" for k, v in env["skipped"].items())
            + f"\ncommand: `{env['command']}`\n{n} MNIST test images; success over the clean-correct ones\n")


def print_report(paths: list[Path]) -> None:
    """The headers and one table of the results that ``--json`` wrote to ``paths``, the ratios computed again."""
    rows: list[dict] = []
    for path in paths:
        stored = json.loads(path.read_text(encoding="utf-8"))
        env = stored["environment"]
        rows += stored["rows"]
        print(header(env, env["settings"]["n"]))
    info = groups(dict(env["settings"]["eps"]))
    add_ratios(rows, info)
    print(table(rows, info))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report is not None:
        print_report(args.report)
        return 0
    torch.set_num_threads(args.threads)
    malloc = "system" if args.system_malloc or not keep_freed_memory() else "keeps freed memory"
    versions, skipped = probe(args.libraries)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    libs = [lib for lib in args.libraries if lib in versions]
    settings = Settings.from_args(args)
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "python": platform.python_version(), "machine": platform.machine(),
           "malloc": malloc, "versions": versions, "skipped": skipped, "settings": asdict(settings),
           "command": "python " + shlex.join(["benchmarks/compare_min_norm.py", *sys.argv[1:]])}
    x_all, y_all = fixed_subset(*load_mnist("test"), args.n, seed=SEED)
    info = groups(dict(settings.eps))
    rows: list[dict] = []
    for model_name in args.models:
        model = models.load(model_name).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        for name in args.attacks:
            rows += run_group(info[name], model_name, model, x_all, y_all, libs, versions, settings)
            add_ratios(rows, info)
            if args.json is not None:
                atomic_write_json(args.json, {"environment": env, "rows": rows, "table": table(rows, info)},
                                  kind="min-norm-peers")
    print(header(env, args.n))
    print(table(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
