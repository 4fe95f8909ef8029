"""alva against torchattacks, ART and foolbox: FGSM, PGD-40 and the one-pixel attack, same model, images, settings.

Everything runs in one process on the shipped ``mnist/cnn-small`` model (its normalisation is part of the
model, so every library gets images in [0, 1]) and the same fixed stratified subset of the MNIST test set
(seed 0):

* FGSM, L-inf eps ``--eps`` (0.3), on ``--n`` images (1000), one batch.
* PGD, L-inf eps 0.3, step ``--alpha`` (0.01), ``--steps`` (40) steps, uniform random start, one restart,
  on the same ``--n`` images in one batch; the result is each library's own choice of iterate (see below).
* one-pixel: untargeted, 1 pixel, population ``--op-popsize`` (400, which every library turns into 399
  members: 133 per parameter of (row, column, value)), ``--op-generations`` (30) generations, on the first
  ``--op-n`` (100) images of the subset; every library stops on an image at its first success. foolbox has
  no one-pixel attack (n/a).

What each library does, where it differs (the settings are matched as closely as each API allows):

* alva: ``alva.attacks.FGSM`` / ``PGD(random_start=True, early_stop=False, seed=0)``: returns, per image,
  the last successful iterate, else the first successful one, else the one of highest loss (best-iterate
  tracking, from logits the steps computed anyway). ``DifferentialEvolution(pixels=1)``: DE/rand/1, all
  images at once, fitness the log-probability of the true class.
* torchattacks: ``FGSM``, ``PGD(random_start=True)``: last iterate, mean cross-entropy. ``OnePixel``:
  scipy's DE (best1bin), image by image, fitness the probability of the true class, ``inf_batch=128``.
* ART: ``PyTorchClassifier`` (numpy in, numpy out), ``FastGradientMethod``,
  ``ProjectedGradientDescent(num_random_init=1)``: last iterate; ``batch_size`` = the whole batch.
  ``PixelAttack(th=1, es=1)``: its own copy of scipy's DE, image by image on pixel values in [0, 255],
  fitness the true class's logit, predictions in batches of 128; its population is fixed at
  ``400 // 3 * 3`` = 399 (``--op-popsize`` does not reach it).
* foolbox: ``PyTorchModel(bounds=(0, 1))``, ``FGSM``, ``LinfPGD(abs_stepsize=alpha, random_start=True)``:
  last iterate, summed cross-entropy, and one more forward pass to report success.

The floor of each attack is what no implementation can undercut on this model: for FGSM and PGD a minimal
hand-written loop in plain torch (one forward and one backward pass per step for the gradient of the
input, a signed step, the projection; for PGD the loop of ``benchmarks/attack_speed.py``); for the one-pixel
attack the bare forward pass per image in batches of alva's chunk size, times the queries (images
forwarded, counted by a wrapper around the model) that the library made. Ratio = median seconds / floor.

Timing: each method runs once as warm-up (the one-pixel attacks on 4 images, 1 generation), then
``--repeats`` times, interleaved within each repeat in an order rotated from repeat to repeat; the table
gives medians of wall-clock seconds, the ratio of that to the floor's, and the same ratio in process CPU
seconds (a second opinion on a machine shared with other work). Robust accuracy: the fraction of the
images classified correctly both clean and after the attack (median over the repeats; the random starts
differ between libraries). As in attack_speed.py, glibc is told to keep freed memory (``--system-malloc``
leaves it), which steadies the timings.

Optional dependencies (``pip install -e '.[bench]'`` installs ART, foolbox and scipy; torchattacks must be
installed apart with ``pip install --no-deps torchattacks``, since its requirements would pull torchvision,
which it does not import): a library that is missing is skipped with the reason printed.

Usage::

    python benchmarks/compare_peers.py [--n 1000] [--repeats 3] [--threads 1] [--op-n 100] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import importlib
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alva import models
from alva.attacks import FGSM, PGD
from alva.attacks.differential_evolution import DifferentialEvolution
from alva.data import fixed_subset, load_mnist

# The floor PGD loop and the query-counting wrapper of the sibling benchmarks (this folder is on sys.path when a
# benchmark runs as a script).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from attack_speed import floor_fgsm, floor_pgd  # noqa: E402
from one_pixel import Counting  # noqa: E402

MODEL = "mnist/cnn-small"
SEED = 0
LIBRARIES = ("alva", "torchattacks", "art", "foolbox")
ATTACKS = ("FGSM", "PGD", "one-pixel")

# A method takes (x, y) and returns the adversarial images (a float tensor like x).
Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="test images for FGSM and PGD (default 1000)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per method (default 3)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--eps", type=float, default=0.3, help="L-inf radius of FGSM and PGD (default 0.3)")
    p.add_argument("--alpha", type=float, default=0.01, help="PGD step size (default 0.01)")
    p.add_argument("--steps", type=int, default=40, help="PGD steps (default 40)")
    p.add_argument("--op-n", type=int, default=100, help="images for the one-pixel attack (default 100)")
    p.add_argument("--op-popsize", type=int, default=400, help="one-pixel popsize (default 400: 399 members)")
    p.add_argument("--op-generations", type=int, default=30, help="one-pixel generations (default 30)")
    p.add_argument("--libraries", default=",".join(LIBRARIES), help="comma-separated subset of " + ",".join(LIBRARIES))
    p.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset of " + ",".join(ATTACKS))
    p.add_argument("--system-malloc", action="store_true", help="leave glibc's malloc as it is")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)
    args.libraries = [s for s in args.libraries.split(",") if s]
    args.attacks = [s for s in args.attacks.split(",") if s]
    if set(args.libraries) - set(LIBRARIES) or set(args.attacks) - set(ATTACKS):
        p.error(f"libraries are among {LIBRARIES}, attacks among {ATTACKS}")
    if min(args.n, args.repeats, args.threads, args.steps, args.op_n, args.op_popsize) < 1 or args.op_generations < 0:
        p.error("--n, --repeats, --threads, --steps, --op-n, --op-popsize must be >= 1, --op-generations >= 0")
    if args.op_popsize < 12:
        p.error("--op-popsize must be >= 12 (4 members per parameter)")
    return args


def keep_freed_memory() -> bool:
    """Tell glibc's malloc never to give freed memory back to the kernel (see attack_speed.py)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_trim_threshold, -1)) and bool(mallopt(m_mmap_max, 0))


def probe_libraries(wanted: list[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Versions of the libraries that import, and the reasons of those that do not."""
    modules = {"alva": "alva", "torchattacks": "torchattacks", "art": "art", "foolbox": "foolbox"}
    versions, skipped = {}, {}
    for name in wanted:
        try:
            module = importlib.import_module(modules[name])
            if name == "art":
                importlib.import_module("art.estimators.classification")
                importlib.import_module("art.attacks.evasion")
        except Exception as err:  # noqa: BLE001 - any failure to import means: skip it, say why
            skipped[name] = f"{type(err).__name__}: {err}"
            continue
        versions[name] = getattr(module, "__version__", "?")
    if "torchvision" in sys.modules:
        print("note: importing the peer libraries imported torchvision", file=sys.stderr)
    return versions, skipped


# --------------------------------------------------------------------------------------------- floors

def forward_floor(model: nn.Module, x: torch.Tensor, chunk: int, repeats: int = 5,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds per image of the bare forward pass in batches of ``chunk`` (as one_pixel.py)."""
    batch = x[:1].expand(max(chunk * 4, len(x)), *x.shape[1:]).contiguous()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = clock()
            for part in batch.split(chunk):
                model(part)
            times.append((clock() - start) / len(batch))
    return statistics.median(times[1:])


# --------------------------------------------------------------------------------------------- methods

def gradient_methods(attack: str, libs: list[str], model: nn.Module, args: argparse.Namespace) -> dict[str, Method]:
    eps, alpha, steps = args.eps, args.alpha, args.steps
    methods: dict[str, Method] = {}
    if attack == "FGSM":
        methods["floor"] = lambda x, y: floor_fgsm(model, x, y, eps)
    else:
        methods["floor"] = lambda x, y: floor_pgd(model, x, y, eps, alpha, steps)
    if "alva" in libs:
        if attack == "FGSM":
            alva_attack = FGSM(model, eps=eps, seed=SEED)
        else:
            alva_attack = PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True, early_stop=False,
                              seed=SEED)
        methods["alva"] = lambda x, y: alva_attack(x, y).x_adv
    if "torchattacks" in libs:
        import torchattacks

        if attack == "FGSM":
            ta_attack = torchattacks.FGSM(model, eps=eps)
        else:
            ta_attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)

        def run_torchattacks(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            torch.manual_seed(SEED)
            return ta_attack(x, y)

        methods["torchattacks"] = run_torchattacks
    if "art" in libs:
        from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

        classifier = art_classifier(model)
        if attack == "FGSM":
            art_attack = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=args.n)
        else:
            art_attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps,
                                                  num_random_init=1, batch_size=args.n, verbose=False)

        def run_art(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            np.random.seed(SEED)
            torch.manual_seed(SEED)
            return torch.from_numpy(art_attack.generate(x=x.numpy(), y=y.numpy()))

        methods["art"] = run_art
    if "foolbox" in libs:
        import foolbox

        fmodel = foolbox.PyTorchModel(model, bounds=(0.0, 1.0), device="cpu")
        if attack == "FGSM":
            fb_attack = foolbox.attacks.FGSM()
        else:
            fb_attack = foolbox.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True)

        def run_foolbox(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            torch.manual_seed(SEED)
            _, clipped, _ = fb_attack(fmodel, x, y, epsilons=eps)
            return clipped

        methods["foolbox"] = run_foolbox
    return methods


def art_classifier(model: nn.Module):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=10,
                             clip_values=(0.0, 1.0), device_type="cpu")


def one_pixel_methods(libs: list[str], counting: Counting, args: argparse.Namespace
                      ) -> dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]]:
    """Methods taking (x, y, generations); foolbox has no one-pixel attack."""
    members = max(1, args.op_popsize // 3) * 3  # torchattacks' and ART's population for 1 pixel of 1 channel
    methods: dict[str, Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]] = {}
    if "alva" in libs:
        def run_alva(x: torch.Tensor, y: torch.Tensor, generations: int) -> torch.Tensor:
            attack = DifferentialEvolution(counting, pixels=1, popsize=members, generations=generations, seed=SEED)
            return attack(x, y).x_adv

        methods["alva"] = run_alva
    if "torchattacks" in libs:
        import torchattacks

        def run_torchattacks(x: torch.Tensor, y: torch.Tensor, generations: int) -> torch.Tensor:
            np.random.seed(SEED)
            attack = torchattacks.OnePixel(counting, pixels=1, steps=generations, popsize=args.op_popsize,
                                           inf_batch=128)
            return attack(x, y)

        methods["torchattacks"] = run_torchattacks
    if "art" in libs:
        from art.attacks.evasion import PixelAttack

        classifier = art_classifier(counting)

        def run_art(x: torch.Tensor, y: torch.Tensor, generations: int) -> torch.Tensor:
            np.random.seed(SEED)
            attack = PixelAttack(classifier, th=1, es=1, max_iter=generations, targeted=False, verbose=False)
            return torch.from_numpy(attack.generate(x=x.numpy(), y=y.numpy())).float()

        methods["art"] = run_art
    return methods


# --------------------------------------------------------------------------------------------- measurement

@torch.no_grad()
def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor) -> float:
    correct = (model(x).argmax(1) == y) & (model(x_adv.to(x.dtype)).argmax(1) == y)
    return correct.float().mean().item()


def measure(methods: dict[str, Callable[[], torch.Tensor]], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            repeats: int, label: str, counting: Counting | None = None) -> dict[str, dict]:
    """Interleaved, rotated repeats of argument-free methods; seconds, robust accuracy (and queries)."""
    runs: dict[str, dict] = {name: {"seconds": [], "cpu_seconds": [], "robust_acc": [], "queries": []}
                             for name in methods}
    names = list(methods)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            if counting is not None:
                counting.images = 0
            start, start_cpu = time.perf_counter(), time.process_time()
            x_adv = methods[name]()
            seconds = time.perf_counter() - start
            runs[name]["seconds"].append(seconds)
            runs[name]["cpu_seconds"].append(time.process_time() - start_cpu)
            runs[name]["queries"].append(counting.images if counting is not None else 0)
            runs[name]["robust_acc"].append(robust_accuracy(model, x, y, x_adv))
            print(f"  {label} repeat {r + 1}/{repeats} {name:<13} {seconds:8.3f} s", file=sys.stderr, flush=True)
    for run in runs.values():
        run["median_seconds"] = statistics.median(run["seconds"])
        run["median_cpu_seconds"] = statistics.median(run["cpu_seconds"])
        run["median_robust_acc"] = statistics.median(run["robust_acc"])
        run["median_queries"] = statistics.median(run["queries"])
    return runs


def run_gradient(attack: str, libs: list[str], model: nn.Module, x, y, args) -> dict[str, dict]:
    methods = gradient_methods(attack, libs, model, args)
    for name, method in methods.items():  # warm-up
        print(f"  {attack} warm-up {name}", file=sys.stderr, flush=True)
        method(x, y)
    runs = measure({name: (lambda m=m: m(x, y)) for name, m in methods.items()}, model, x, y, args.repeats, attack)
    floor, floor_cpu = runs["floor"]["median_seconds"], runs["floor"]["median_cpu_seconds"]
    for run in runs.values():
        run["ratio"] = run["median_seconds"] / floor
        run["cpu_ratio"] = run["median_cpu_seconds"] / floor_cpu
    return runs


def run_one_pixel(libs: list[str], model: nn.Module, x, y, args) -> tuple[dict[str, dict], float]:
    counting = Counting(model).eval()
    methods = one_pixel_methods(libs, counting, args)
    for name, method in methods.items():  # warm-up: 4 images, 1 generation
        print(f"  one-pixel warm-up {name}", file=sys.stderr, flush=True)
        method(x[:4], y[:4], 1)
    gens = args.op_generations
    runs = measure({name: (lambda m=m: m(x, y, gens)) for name, m in methods.items()}, model, x, y, args.repeats,
                   "one-pixel", counting)
    chunk = DifferentialEvolution(model).chunk_for(x.device, 10**9)
    per_query = forward_floor(model, x, chunk)
    per_query_cpu = forward_floor(model, x, chunk, clock=time.process_time)
    for run in runs.values():
        run["ratio"] = run["median_seconds"] / (per_query * run["median_queries"])
        run["cpu_ratio"] = run["median_cpu_seconds"] / (per_query_cpu * run["median_queries"])
    return runs, per_query


# --------------------------------------------------------------------------------------------- report

def command_line() -> str:
    return "python " + " ".join(shlex.quote(a) for a in ["benchmarks/compare_peers.py", *sys.argv[1:]])


def report(results: dict, env: dict, args: argparse.Namespace) -> str:
    lines = [
        f"{env['date']}; torch {env['torch']}, {env['threads']} thread(s), Python {env['python']}, "
        f"{env['machine']}; malloc: {env['malloc']}",
        "libraries: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + "".join(f"; {k} skipped ({v})" for k, v in env["skipped"].items()),
        f"command: `{env['command']}`",
        f"{MODEL}; FGSM and PGD on {args.n} MNIST test images (eps {args.eps}; PGD step {args.alpha}, "
        f"{args.steps} steps, random start); one-pixel on {args.op_n} images (1 pixel, popsize {args.op_popsize}, "
        f"{args.op_generations} generations); median of {args.repeats} repeats after a warm-up",
        "",
        "| attack | library | median seconds | ratio to floor | CPU-time ratio | robust accuracy | queries / image |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for attack, entry in results.items():
        runs = entry["runs"]
        n = args.op_n if attack == "one-pixel" else args.n
        if attack == "one-pixel":
            lines.append(f"| {attack} | floor (forward pass, {entry['floor_us_per_query']:.1f} us/query) "
                         "| | 1.00 | 1.00 | | |")
        for name in ["floor", *LIBRARIES]:
            if name == "foolbox" and attack == "one-pixel" and name in env["versions"]:
                lines.append(f"| {attack} | foolbox | n/a | n/a | n/a | n/a | no one-pixel attack |")
                continue
            if name not in runs:
                continue
            r = runs[name]
            label = "floor (hand-written)" if name == "floor" else name
            queries = f"{r['median_queries'] / n:.0f}" if attack == "one-pixel" else ""
            lines.append(f"| {attack} | {label} | {r['median_seconds']:.3f} | {r['ratio']:.2f} | "
                         f"{r['cpu_ratio']:.2f} | {r['median_robust_acc']:.4f} | {queries} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    malloc = "system" if args.system_malloc or not keep_freed_memory() else "keeps freed memory"
    versions, skipped = probe_libraries(args.libraries)
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    libs = list(versions)
    env = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "torch": torch.__version__,
           "threads": torch.get_num_threads(), "python": platform.python_version(), "machine": platform.machine(),
           "malloc": malloc, "versions": versions, "skipped": skipped, "command": command_line(),
           "args": {k: v for k, v in vars(args).items() if k != "json"}}
    model = models.load(MODEL).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x_all, y_all = fixed_subset(*load_mnist("test"), max(args.n, args.op_n), seed=SEED)
    x, y = x_all[:args.n].contiguous(), y_all[:args.n].contiguous()
    results: dict[str, dict] = {}
    for attack in args.attacks:
        if attack == "one-pixel":
            xo, yo = x_all[:args.op_n].contiguous(), y_all[:args.op_n].contiguous()
            runs, per_query = run_one_pixel(libs, model, xo, yo, args)
            results[attack] = {"runs": runs, "floor_us_per_query": per_query * 1e6}
        else:
            results[attack] = {"runs": run_gradient(attack, libs, model, x, y, args)}
    text = report(results, env, args)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environment": env, "results": results, "table": text}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
