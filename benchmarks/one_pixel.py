"""One-pixel attack: alva's DifferentialEvolution against torchattacks.OnePixel, and alva's k-pixel success.

Comparison (default): the same ``--n`` MNIST test images (fixed stratified subset, seed 0) of the shipped
``--model`` (default ``mnist/cnn-small``), untargeted, k = 1 pixel, the same population and number of generations:

* torchattacks.OnePixel(pixels=1, popsize=P, steps=G): scipy-style DE (best1bin, dither (0.5, 1),
  recombination 1) run image by image; its population is ``floor(P / 3) * 3`` members for MNIST
  (3 parameters per pixel), so alva gets the same number: ``popsize = floor(P / 3) * 3``, ``generations=G``.
* alva DifferentialEvolution(pixels=1, popsize=that, generations=G, strategy=--strategy): all images at once.

Both stop on an image at its first success. Queries are counted by a wrapper around the model (images
forwarded), which for alva must equal the sum of its reported per-image queries. Each method runs once as
warm-up on a few images, then ``--repeats`` times interleaved; the table gives medians of seconds per image
and microseconds per query, success rate on all images and on the clean-correct ones, and alva's speed-up.
``floor`` is the cost of the bare model forward pass per image in batches of alva's chunk size: no attack
can spend less per query on this model.

``--sweep``: alva's success at 1, 3 and 10 pixels (``--sweep-pixels``) on ``--sweep-n`` test images with the
budget ``--popsize``/``--steps`` of the comparison (or ``--sweep-popsize``/``--sweep-steps``).

torchattacks is optional (``pip install --no-deps torchattacks``; it imports scipy but not torchvision):
without it the comparison is skipped. Usage::

    python benchmarks/one_pixel.py [--n 100] [--popsize 400] [--steps 30] [--repeats 3] [--threads 1]
    python benchmarks/one_pixel.py --no-compare --sweep [--sweep-n 500] [--sweep-pixels 1,3,10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from alva import models
from alva.attacks.differential_evolution import DifferentialEvolution
from alva.data import fixed_subset, load_mnist

MODEL = "mnist/cnn-small"


class Counting(nn.Module):
    """The model, counting the images it is given."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.model(x)


def run_alva(model: Counting, x, y, popsize: int, steps: int, strategy: str, seed: int, pixels: int = 1) -> dict:
    attack = DifferentialEvolution(model, pixels=pixels, popsize=popsize, generations=steps, strategy=strategy,
                                   seed=seed)
    model.images = 0
    start = time.perf_counter()
    result = attack(x, y)
    seconds = time.perf_counter() - start
    if model.images != int(result.queries.sum()):
        raise AssertionError(f"alva reported {int(result.queries.sum())} queries, the model saw {model.images}")
    if int(result.queries.max()) > attack.budget:
        raise AssertionError("alva exceeded its query budget")
    clean_ok = result.clean_logits.argmax(1) == y
    return {"seconds": seconds, "queries": model.images, "success": result.success.float().mean().item(),
            "success_clean_correct": result.success[clean_ok].float().mean().item(),
            "changed_max": int(result.extras["changed_pixels"].max()), "budget": attack.budget}


def run_torchattacks(model: Counting, x, y, popsize: int, steps: int) -> dict:
    import torchattacks  # noqa: PLC0415 - optional

    attack = torchattacks.OnePixel(model, pixels=1, steps=steps, popsize=popsize, inf_batch=128)
    model.images = 0
    start = time.perf_counter()
    x_adv = attack(x, y)
    seconds = time.perf_counter() - start
    queries = model.images
    with torch.no_grad():
        pred = model.model(x_adv).argmax(1)
        clean_ok = model.model(x).argmax(1) == y
    success = pred != y
    changed = (x_adv != x).flatten(1).sum(1)
    return {"seconds": seconds, "queries": queries, "success": success.float().mean().item(),
            "success_clean_correct": success[clean_ok].float().mean().item(), "changed_max": int(changed.max())}


def forward_floor(model: nn.Module, x: torch.Tensor, chunk: int, repeats: int = 5) -> float:
    """Median seconds per image of the bare forward pass in batches of ``chunk``."""
    batch = x[:1].expand(max(chunk * 4, len(x)), *x.shape[1:]).contiguous()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            for part in batch.split(chunk):
                model(part)
            times.append((time.perf_counter() - start) / len(batch))
    return statistics.median(times[1:])


def compare(args, model: nn.Module, x, y) -> dict:
    alva_pop = max(1, args.popsize // 3) * 3  # torchattacks' population for 1 pixel of a 1-channel image
    counting = Counting(model)
    methods = {"alva": lambda: run_alva(counting, x, y, alva_pop, args.steps, args.strategy, args.seed)}
    try:
        import torchattacks  # noqa: F401, PLC0415

        methods["torchattacks"] = lambda: run_torchattacks(counting, x, y, args.popsize, args.steps)
        if "torchvision" in sys.modules:
            print("note: importing torchattacks imported torchvision")
    except ImportError:
        print("torchattacks is not installed (pip install --no-deps torchattacks): comparison skipped")
    # warm-up on a few images
    small = (x[:4], y[:4])
    run_alva(counting, *small, alva_pop, 1, args.strategy, args.seed)
    if "torchattacks" in methods:
        run_torchattacks(counting, *small, args.popsize, 1)
    runs: dict[str, list[dict]] = {name: [] for name in methods}
    names = list(methods)
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            runs[name].append(methods[name]())
            print(f"  repeat {r + 1} {name}: {runs[name][-1]['seconds']:.1f} s, {runs[name][-1]['queries']} queries",
                  flush=True)
    floor = forward_floor(model, x, chunk=DifferentialEvolution(model).chunk_for(x.device, 10**9))
    table = {}
    for name, rs in runs.items():
        table[name] = {
            "s_per_image": statistics.median(r["seconds"] / len(x) for r in rs),
            "us_per_query": statistics.median(r["seconds"] / r["queries"] * 1e6 for r in rs),
            "queries_per_image": statistics.median(r["queries"] / len(x) for r in rs),
            "success": statistics.median(r["success"] for r in rs),
            "success_clean_correct": statistics.median(r["success_clean_correct"] for r in rs),
            "changed_max": max(r["changed_max"] for r in rs),
            "runs": rs,
        }
    header = (f"{'method':<14}{'s/image':>10}{'us/query':>10}{'queries/img':>13}{'success':>9}"
              f"{'succ|correct':>14}{'max changed':>13}")
    print(f"\nOne-pixel attack, {len(x)} images of {args.model}, popsize {args.popsize} (alva {alva_pop}), "
          f"{args.steps} generations, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print(header)
    for name, row in table.items():
        print(f"{name:<14}{row['s_per_image']:>10.3f}{row['us_per_query']:>10.1f}{row['queries_per_image']:>13.0f}"
              f"{row['success']:>9.3f}{row['success_clean_correct']:>14.3f}{row['changed_max']:>13d}")
    print(f"{'forward floor':<14}{'':>10}{floor * 1e6:>10.1f}")
    result = {"table": table, "floor_us_per_image": floor * 1e6, "alva_popsize": alva_pop}
    if "torchattacks" in table:
        per_query = table["torchattacks"]["us_per_query"] / table["alva"]["us_per_query"]
        per_image = table["torchattacks"]["s_per_image"] / table["alva"]["s_per_image"]
        ceiling = table["torchattacks"]["us_per_query"] / (floor * 1e6)
        print(f"alva is {per_query:.2f}x faster per query and {per_image:.2f}x faster per image; "
              f"the forward floor allows at most {ceiling:.1f}x per query on this model and machine")
        result.update(speedup_per_query=per_query, speedup_per_image=per_image, max_speedup_per_query=ceiling)
    return result


def sweep(args, model: nn.Module) -> dict:
    x, y = fixed_subset(*load_mnist("test"), args.sweep_n, seed=args.seed)
    popsize = args.sweep_popsize or args.popsize
    steps = args.sweep_steps if args.sweep_steps is not None else args.steps
    counting = Counting(model)
    rows = {}
    print(f"\nalva DE ({args.strategy}) on {len(x)} test images of {args.model}, popsize {popsize}, "
          f"{steps} generations (budget {1 + popsize * (1 + steps)} queries per image)")
    print(f"{'pixels':>6}{'success':>9}{'succ|correct':>14}{'queries/img':>13}{'seconds':>9}{'max changed':>13}")
    for k in args.sweep_pixels:
        r = run_alva(counting, x, y, popsize, steps, args.strategy, args.seed, pixels=k)
        rows[k] = r
        print(f"{k:>6}{r['success']:>9.3f}{r['success_clean_correct']:>14.3f}{r['queries'] / len(x):>13.0f}"
              f"{r['seconds']:>9.1f}{r['changed_max']:>13d}", flush=True)
    return {"n": len(x), "popsize": popsize, "generations": steps, "strategy": args.strategy, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=MODEL, help="zoo name or weights file of the classifier attacked")
    p.add_argument("--n", type=int, default=100, help="test images for the comparison")
    p.add_argument("--popsize", type=int, default=400, help="torchattacks' popsize (alva: floor(P/3)*3)")
    p.add_argument("--steps", type=int, default=30, help="generations")
    p.add_argument("--strategy", default="rand1", choices=["rand1", "best1"], help="alva's DE scheme")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-compare", action="store_true", help="skip the comparison with torchattacks")
    p.add_argument("--sweep", action="store_true", help="alva's success at several pixel counts")
    p.add_argument("--sweep-n", type=int, default=500)
    p.add_argument("--sweep-pixels", type=lambda s: [int(v) for v in s.split(",")], default=[1, 3, 10])
    p.add_argument("--sweep-popsize", type=int, default=None)
    p.add_argument("--sweep-steps", type=int, default=None)
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = models.load(args.model)
    out: dict = {"model": args.model, "threads": args.threads, "torch": torch.__version__, "args": vars(args)}
    if not args.no_compare:
        x, y = fixed_subset(*load_mnist("test"), args.n, seed=args.seed)
        out["compare"] = compare(args, model, x, y)
    if args.sweep:
        out["sweep"] = sweep(args, model)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
