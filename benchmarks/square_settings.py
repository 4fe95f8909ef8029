"""Is the Square attack of the strong evaluation at least as strong as AutoAttack's?

Runs the Square attack alone (no APGD before it) on N (default 1000) fixed MNIST test images of a shipped
model (default ``mnist/cnn-small-pgd``, L-inf eps 0.3) under each setting and prints robust accuracy after
it, the points broken by one setting and not by the strong evaluation's, and wall-clock and CPU seconds:

- ``strong``: as the strong evaluation configures it (``StrongEvaluation(...).member("square")``): the schedule
  of ``p`` not rescaled (AutoAttack's), 5000 random-search steps, windows drawn per sample;
- ``rescaled``: alva's ``Square`` with its defaults (the schedule of ``p`` stretched to the budget);
- ``autoattack``: the reference ``autoattack.square.SquareAttack`` with AutoAttack standard's settings
  (``p_init=0.8, n_queries=5000, resc_schedule=False``; one window position per batch and step), when the
  ``autoattack`` package can be imported (it is not a dependency of alva).

Usage: ``python benchmarks/square_settings.py [--model mnist/cnn-small-pgd] [--eps 0.3] [--n 1000]
[--settings strong,rescaled,autoattack] [--attack-seed 0] [--threads 1] [--json PATH]`` (``--seed`` picks the
images, ``--attack-seed`` the attacks' random numbers).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from alva import models
from alva.attacks import Square
from alva.data import fixed_subset, load_mnist
from alva.evaluation import run_attack
from alva.evaluation.strong import StrongEvaluation

Runner = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _alva(attack_of: Callable[[torch.nn.Module], Square], batch_size: int) -> Runner:
    def run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        res = run_attack(attack_of(model), x, y, batch_size=batch_size, progress=False)
        return (res.clean_logits.argmax(1) == y) & ~res.success

    return run


def _autoattack(eps: float, norm: str, seed: int, batch_size: int) -> Runner:
    from autoattack.square import SquareAttack  # the reference implementation, not a dependency

    def run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        attack = SquareAttack(model, p_init=0.8, n_queries=5000, eps=eps, norm={"linf": "Linf", "l2": "L2"}[norm],
                              n_restarts=1, seed=seed, verbose=False, device="cpu", resc_schedule=False)
        robust = []
        for i in range(0, len(x), batch_size):
            adv = attack.perturb(x[i:i + batch_size], y[i:i + batch_size])
            with torch.no_grad():
                robust.append(model(adv).argmax(1) == y[i:i + batch_size])
        return torch.cat(robust)

    return run


def runners(args: argparse.Namespace) -> dict[str, Runner]:
    """The settings to compare, by name."""
    seed = args.attack_seed
    strong = lambda model: StrongEvaluation(model, args.eps, args.norm, seed=seed,  # noqa: E731
                                            progress=False, sanity=False).member("square")
    rescaled = lambda model: Square(model, args.eps, n_queries=5000, norm=args.norm, seed=seed)  # noqa: E731
    return {"strong": _alva(strong, args.batch_size), "rescaled": _alva(rescaled, args.batch_size),
            "autoattack": _autoattack(args.eps, args.norm, seed, args.batch_size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mnist/cnn-small-pgd")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--norm", default="linf", choices=["linf", "l2"])
    parser.add_argument("--settings", default="strong,rescaled,autoattack")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="picks the images")
    parser.add_argument("--attack-seed", type=int, default=0, help="seeds the attacks")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = models.load(args.model)
    x, y = fixed_subset(*load_mnist("test"), args.n, seed=args.seed)
    available = runners(args)
    robust: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for name in args.settings.split(","):
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            robust[name] = available[name](model, x, y)
        except ImportError as error:
            print(f"{name}: skipped ({error})")
            continue
        seconds[name], cpu[name] = time.perf_counter() - started, time.process_time() - cpu_started
    print(f"Square alone on {args.model}, {args.norm} eps={args.eps}, {args.n} test images, attack seed "
          f"{args.attack_seed}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'setting':12s} {'robust acc':>10s} {'seconds':>8s} {'CPU s':>8s} {'only it broke':>13s} "
          f"{'only strong broke':>17s}")
    ref = robust.get("strong")
    rows = []
    for name, flags in robust.items():
        only_it = "" if ref is None else int((~flags & ref).sum())
        only_ref = "" if ref is None else int((flags & ~ref).sum())
        rows.append({"setting": name, "robust_acc": flags.float().mean().item(), "seconds": seconds[name],
                     "cpu_seconds": cpu[name], "only_it_broke": only_it, "only_strong_broke": only_ref})
        print(f"{name:12s} {rows[-1]['robust_acc']:10.4f} {seconds[name]:8.1f} {cpu[name]:8.1f} {only_it!s:>13s} "
              f"{only_ref!s:>17s}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "settings": vars(args), "rows": rows, "when": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": platform.platform(), "torch": torch.__version__}, indent=2) + "\n")


if __name__ == "__main__":
    main()
