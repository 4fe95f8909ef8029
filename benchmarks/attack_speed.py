"""How fast are alva's PGD and FGSM compared with the cheapest ones one could write by hand?

Measures wall-clock seconds of an L-inf PGD attack (by default eps 0.3, alpha 0.01, 40 steps, uniform
random start) on one batch of MNIST test images against the shipped ``mnist/cnn-small`` model, three ways:

1. ``floor``: a minimal hand-written loop (``floor_pgd`` below): per step one forward and one backward
   pass for the gradient of the input only, a signed step, projection onto the eps ball and [0, 1],
   the random start drawn as alva draws it. Nothing else: no best-iterate tracking, no bookkeeping, no
   validation, no forward pass on the clean batch. Its robust accuracy is computed after the timed
   section from the last iterate.
2. ``alva PGD``: ``alva.attacks.PGD(..., random_start=True)`` without early stop (timed call includes
   alva's input validation, its clean forward pass and per-sample best-iterate tracking).
3. ``alva PGD, early stop``: the same with ``early_stop=True``.

With ``--attack fgsm``: FGSM (one signed step of eps from the clean images) three ways:

1. ``floor``: ``floor_fgsm`` below, one forward and one backward pass for the gradient of the input only,
   the step and the clip to [0, 1], in place; it returns the adversarial images only.
2. ``floor + success``: the same and one forward pass at the adversarial images, with the per-sample success
   (misclassified) from it: the least work that yields what an ``AttackResult`` holds (the images, their
   logits, the success of each, besides the clean logits, which the gradient's forward pass gives).
3. ``alva FGSM``: ``alva.attacks.FGSM(...)`` with its complete result (validation, clean and adversarial
   logits, per-sample success, steps and queries).

Each method runs once as warm-up, then ``--repeats`` times, interleaved within each repeat (in an
order rotated from repeat to repeat) so that drift in machine load affects all three alike. The table
gives the median seconds, the ratio to the floor's median, and the robust accuracy: the fraction of
the images classified correctly both on the clean image and on the adversarial one.

Memory: on Linux, glibc's malloc returns large freed blocks to the kernel whenever the free space at
the top of its heap passes a threshold, and the next step faults the model's activation buffers in
again, page by page. Whether that happens depends on where earlier runs left their buffers, not on the
code under test, and it moves a run's time by up to half in either direction (seen: the same attack
taking 1.2 s or 1.9 s, with 0 or 600,000 minor page faults). So by default the benchmark first tells
glibc to keep freed memory (``mallopt``: no trimming, no mmap), which measures the computation;
``--system-malloc`` leaves malloc as it is. Minor page faults per run go to the JSON either way.
Process CPU seconds are recorded too: on a machine shared with other work, their ratio is a second
opinion on the wall-clock one.

Usage: ``python benchmarks/attack_speed.py [--attack pgd|fgsm] [--n 1000] [--repeats 5] [--steps 40] [--json PATH]``
(also ``--eps``, ``--alpha``, ``--threads`` and ``--system-malloc``; see ``--help``).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import resource
except ImportError:  # not on Windows: no page-fault counts there
    resource = None

import torch
import torch.nn.functional as F
from torch import nn

from alva import models
from alva.attacks import FGSM, PGD
from alva.data import fixed_subset, load_mnist

MODEL = "mnist/cnn-small"
EPS = 0.3  # defaults of --eps and --alpha
ALPHA = 0.01
SEED = 0
MAX_RATIO = 1.05  # the bound on alva PGD (no early stop) / floor and alva FGSM / floor

# A method runs the attack on (x, y) and returns (clean_logits or None, x_adv or None, adv_logits or None);
# whatever it leaves as None is computed after the timed section.
Outputs = tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]
Method = Callable[[torch.Tensor, torch.Tensor], Outputs]


@dataclass
class Measurement:
    name: str
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)
    robust_acc: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu_seconds)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attack", choices=("pgd", "fgsm"), default="pgd", help="the attack timed (default pgd)")
    parser.add_argument("--n", type=int, default=1000, help="test images in the batch (default 1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per method (default 5)")
    parser.add_argument("--steps", type=int, default=40, help="PGD steps (default 40)")
    parser.add_argument("--eps", type=float, default=EPS, help=f"L-inf radius (default {EPS})")
    parser.add_argument("--alpha", type=float, default=ALPHA, help=f"step size (default {ALPHA})")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch default)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is (see the module docstring)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.steps < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--n, --repeats, --steps and --threads must be >= 1")
    if not (args.eps >= 0 and args.alpha > 0):
        parser.error("--eps must be >= 0 and --alpha > 0")
    return args


def keep_freed_memory() -> bool:
    """Tell glibc's malloc never to give freed memory back to the kernel (no trimming, no mmap).

    Returns whether that worked (only with glibc). Costs memory: the process keeps its peak.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(mallopt(m_trim_threshold, -1)) and bool(mallopt(m_mmap_max, 0))


def load_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_mnist("test")
    x, y = fixed_subset(x, y, n, seed=SEED)
    return x.contiguous(), y.contiguous()


def load_model() -> nn.Module:
    model = models.load(MODEL).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def floor_pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int
              ) -> torch.Tensor:
    """The minimal L-inf PGD loop: uniform random start, then ``steps`` signed gradient steps, projected.

    Written tight: the eps ball and [0, 1] are one interval per pixel, computed once, and each step
    updates in place (sign, scaled add, clamp), so a step allocates nothing beyond the passes.
    """
    generator = torch.Generator().manual_seed(SEED)
    noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).mul_(2 * eps).sub_(eps)
    x_adv = (x + noise).clamp_(0.0, 1.0)
    lower, upper = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = x_adv.detach().add_(grad.sign_(), alpha=alpha).clamp_(lower, upper)
    return x_adv


def floor_fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """The minimal FGSM: one forward and backward pass for the input's gradient, then ``clip(x + eps sign(g))``."""
    x_in = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x_in), y, reduction="sum"), x_in)
    return x.add(grad.sign_(), alpha=eps).clamp_(0.0, 1.0)


def make_fgsm_methods(model: nn.Module, eps: float) -> dict[str, Method]:
    attack = FGSM(model, eps=eps, seed=SEED)

    def floor(x: torch.Tensor, y: torch.Tensor) -> Outputs:
        return None, floor_fgsm(model, x, y, eps), None

    def floor_with_success(x: torch.Tensor, y: torch.Tensor) -> Outputs:
        x_adv = floor_fgsm(model, x, y, eps)
        with torch.no_grad():
            adv_logits = model(x_adv)
        adv_logits.argmax(dim=1).ne(y)  # the per-sample success
        return None, x_adv, adv_logits

    def alva_fgsm(x: torch.Tensor, y: torch.Tensor) -> Outputs:
        result = attack(x, y)
        return result.clean_logits, result.x_adv, result.adv_logits

    return {"floor (hand-written FGSM)": floor, "floor + success": floor_with_success, "alva FGSM": alva_fgsm}


def make_methods(model: nn.Module, eps: float, alpha: float, steps: int) -> dict[str, Method]:
    def floor(x: torch.Tensor, y: torch.Tensor) -> Outputs:
        return None, floor_pgd(model, x, y, eps, alpha, steps), None

    def alva_pgd(early_stop: bool) -> Method:
        attack = PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True, early_stop=early_stop,
                     seed=SEED)

        def run(x: torch.Tensor, y: torch.Tensor) -> Outputs:
            result = attack(x, y)
            return result.clean_logits, result.x_adv, result.adv_logits

        return run

    return {"floor (hand-written PGD)": floor, "alva PGD": alva_pgd(False),
            "alva PGD, early stop": alva_pgd(True)}


@torch.no_grad()
def robust_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, outputs: Outputs) -> float:
    clean_logits, x_adv, adv_logits = outputs
    if clean_logits is None:
        clean_logits = model(x)
    if adv_logits is None:
        adv_logits = model(x_adv)
    correct = (clean_logits.argmax(dim=1) == y) & (adv_logits.argmax(dim=1) == y)
    return correct.float().mean().item()


def minor_page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource is not None else 0


def timed(method: Method, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, int, Outputs]:
    """Wall-clock seconds, process CPU seconds and minor page faults of one call, and its outputs."""
    gc.collect()
    start, start_cpu, start_faults = time.perf_counter(), time.process_time(), minor_page_faults()
    outputs = method(x, y)
    return (time.perf_counter() - start, time.process_time() - start_cpu, minor_page_faults() - start_faults,
            outputs)


def measure(methods: dict[str, Method], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
            repeats: int) -> list[Measurement]:
    results = {name: Measurement(name) for name in methods}
    for method in methods.values():  # warm-up
        method(x, y)
    names = list(methods)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, cpu_seconds, faults, outputs = timed(methods[name], x, y)
            results[name].seconds.append(seconds)
            results[name].cpu_seconds.append(cpu_seconds)
            results[name].page_faults.append(faults)
            results[name].robust_acc.append(robust_accuracy(model, x, y, outputs))
            print(f"  repeat {r + 1}/{repeats}  {name:<26} {seconds:7.3f} s", file=sys.stderr, flush=True)
    return list(results.values())


def environment(args: argparse.Namespace) -> dict[str, object]:
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "model": MODEL, "n": args.n, "eps": args.eps, "alpha": args.alpha, "steps": args.steps,
        "repeats": args.repeats,
    }


def table(measurements: list[Measurement]) -> str:
    floor = measurements[0].median
    rows = ["| method | median seconds | ratio to floor | robust accuracy |", "|---|---:|---:|---:|"]
    for m in measurements:
        rows.append(f"| {m.name} | {m.median:.3f} | {m.median / floor:.3f} | {m.robust_acc[-1]:.4f} |")
    return "\n".join(rows)


def ratio_line(method: Measurement, reference: Measurement) -> str:
    ratio = method.median / reference.median
    verdict = "meets" if ratio <= MAX_RATIO else "EXCEEDS"
    paired = [m / r for m, r in zip(method.seconds, reference.seconds, strict=True)]
    return (f"{method.name} / {reference.name} = {ratio:.3f} ({verdict} the bound of {MAX_RATIO}); in process CPU "
            f"time {method.median_cpu / reference.median_cpu:.3f}; within each repeat {statistics.median(paired):.3f} "
            f"(median; from {min(paired):.3f} to {max(paired):.3f})")


def summary(measurements: list[Measurement]) -> list[str]:
    floor, second, third = measurements
    fgsm = third.name == "alva FGSM"
    plain = third if fgsm else second
    lines = [ratio_line(plain, floor)]
    if fgsm:
        lines.append(ratio_line(plain, second))
    else:
        acc_diff = third.robust_acc[-1] - plain.robust_acc[-1]
        lines.append(f"early stop: {plain.median / third.median:.2f}x faster than alva PGD without it; "
                     f"robust accuracy {third.robust_acc[-1]:.4f} vs {plain.robust_acc[-1]:.4f} "
                     f"(difference {acc_diff:+.4f})")
    for m in measurements:
        if len(set(m.robust_acc)) > 1:
            lines.append(f"note: robust accuracy of {m.name} varied over repeats: {m.robust_acc}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    env = environment(args)
    env["malloc"] = "system" if args.system_malloc or not keep_freed_memory() else "keeps freed memory"
    model = load_model()
    x, y = load_batch(args.n)
    fgsm = args.attack == "fgsm"
    env["attack"] = args.attack
    methods = make_fgsm_methods(model, args.eps) if fgsm else make_methods(model, args.eps, args.alpha, args.steps)
    measurements = measure(methods, model, x, y, args.repeats)
    print(f"torch {env['torch']}, {env['threads']} threads, {env['date']}, malloc: {env['malloc']}")
    steps = "FGSM" if fgsm else f"alpha {args.alpha}, {args.steps} steps"
    print(f"{MODEL}, {args.n} MNIST test images, L-inf eps {args.eps}, {steps}, median of {args.repeats} repeats "
          "after one warm-up\n")
    print(table(measurements))
    print()
    lines = summary(measurements)
    print("\n".join(lines))
    if args.json is not None:
        results = [asdict(m) | {"median_seconds": m.median, "median_cpu_seconds": m.median_cpu}
                   for m in measurements]
        payload = {"environment": env, "results": results, "summary": lines}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
