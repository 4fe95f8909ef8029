"""``alva sparse`` (sparse confident images of chosen classes) and ``alva one-pixel`` (k-pixel attack by
differential evolution on test images of any data set)."""

from __future__ import annotations

import argparse
from typing import Any

import safetensors.torch
import torch
from tqdm.auto import tqdm

from alva import distributed
from alva.attacks.base import AttackResult
from alva.attacks.differential_evolution import STRATEGIES, DifferentialEvolution
from alva.attacks.sparse import OPTIMIZERS, SparseConfident, pixel_l0, sparse_summary
from alva.cli.attack_cmd import format_report
from alva.cli.common import add_common, add_numbers, paragraph, recorded
from alva.cli.inputs import add_data_options, add_model_options, load_data, load_model, subset
from alva.cli.run_folder import claim
from alva.evaluation import evaluate_attack
from alva.report import adversarial_grid, sparse_grid
from alva.tracking import atomic_write_bytes, atomic_write_json
from alva.units import parse_fraction

__all__ = ["register", "run_one_pixel", "run_sparse"]

SPARSE_DESCRIPTION = paragraph("""
Generate sparse images that the model assigns to each target class with probability >= --confidence using at most
--max-pixels non-zero pixels: L1-penalised optimisation (--method l1, default) or differential evolution on k pixels
of a blank image (--method de, black-box). The image shape and the classes are those of --data (its images are not
read). Writes result.json (overall and per-class figures), grid.png and images.safetensors to --out.
""")

ONE_PIXEL_DESCRIPTION = paragraph("""
Attack a model on a fixed subset of the test images of --data with differential evolution on k pixels (Su et al.
2019), using only output probabilities. Writes summary.json and grid.png to --out.
""")

MNIST_PIXELS = 28 * 28
MNIST_MAX_PIXELS = 300  # of the 784 pixels of an MNIST image


def pixel_count(text: str) -> int | float:
    """argparse type of ``--max-pixels``: a whole number of pixels (``300``) or a fraction of the image's
    pixels (``0.05`` or ``1/20``)."""
    try:
        if "." not in text and "/" not in text:
            count = int(text)
            if count >= 0:
                return count
        else:
            value = parse_fraction(text)
            if 0 <= value <= 1:
                return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected a number of pixels (300) or a fraction of them (0.05, 1/20), "
                                     f"got {text!r}")


def max_pixels(given: int | float | None, shape: tuple[int, ...]) -> int:
    """The L0 bound in pixels of an image of ``shape``: ``given`` (a count or a fraction of its pixels), else
    300 / 784 of them (300 on a 28 x 28 image)."""
    pixels = shape[-2] * shape[-1]
    if given is None:
        return round(MNIST_MAX_PIXELS * pixels / MNIST_PIXELS)
    return given if isinstance(given, int) else round(given * pixels)


def _add_de(p: argparse.ArgumentParser, pixels: int, popsize: int, generations: int, strategy: str) -> None:
    p.add_argument("--pixels", type=int, default=pixels, help=f"k, pixels a DE candidate sets (default {pixels})")
    p.add_argument("--popsize", type=int, default=popsize, help=f"DE population per image (default {popsize})")
    p.add_argument("--generations", type=int, default=generations, help=f"DE generations (default {generations})")
    p.add_argument("--max-queries", type=int, default=None, help="DE query budget per image (default: from "
                                                                  "popsize and generations)")
    p.add_argument("--strategy", default=strategy, choices=STRATEGIES,
                   help=f"DE/rand/1 (Su et al.) or DE/best/1 (default {strategy})")
    p.add_argument("--mutation", type=float, default=0.5, help="DE scale factor F")
    p.add_argument("--crossover", type=float, default=1.0, help="DE crossover probability CR")


def register(commands) -> None:
    p = commands.add_parser("sparse", help="generate sparse images a classifier assigns to chosen classes",
                            description=SPARSE_DESCRIPTION)
    add_model_options(p)
    add_data_options(p)
    p.add_argument("--target", default="all", help="'all' classes, or a class or comma-separated classes")
    add_numbers(p, n_per_class=10)
    p.add_argument("--method", default="l1", choices=["l1", "de"])
    add_numbers(p, confidence=0.9)
    p.add_argument("--max-pixels", type=pixel_count, default=None,
                   help="most non-zero pixels of a successful image: a count (300) or a fraction of the image's "
                        "pixels (0.05); default: 300 of 784 pixels, the same share of other sizes")
    p.add_argument("--steps", type=int, default=1000, help="l1: most update steps per image")
    p.add_argument("--lam", type=float, default=0.05, help="l1: weight of the L1 penalty")
    p.add_argument("--lr", type=float, default=None, help="l1: step size (default 0.01 for adam, 0.1 for ista)")
    p.add_argument("--optimizer", default="adam", choices=OPTIMIZERS, help="l1: update rule")
    p.add_argument("--start", default="zeros", choices=["zeros", "uniform"], help="l1: start image")
    p.add_argument("--mask-fraction", type=float, default=0.0, help="l1: fraction of pixels held at 0")
    p.add_argument("--zero-tol", type=float, default=1e-3, help="a pixel counts as non-zero above this")
    _add_de(p, 30, 100, 100, "best1")  # rand1 reaches few classes with 30 pixels
    add_numbers(p, seed=0)
    add_common(p, run_sparse, out="output folder",
               resume="run again into --out, which holds a run with the same settings and model (the images are "
                      "made again)")

    q = commands.add_parser("one-pixel", help="k-pixel black-box attack by differential evolution",
                            description=ONE_PIXEL_DESCRIPTION)
    add_model_options(q)
    add_data_options(q)
    _add_de(q, 1, 400, 100, "rand1")
    q.add_argument("--loss", default="ce", choices=["ce", "margin"], help="the fitness DE minimises (its negative)")
    q.add_argument("--target", default=None, choices=["random", "least-likely"], help="make the attack targeted")
    q.add_argument("--confidence", type=float, default=None, help="success also needs this probability")
    q.add_argument("--n", type=int, default=100, help="number of test images (fixed stratified subset)")
    q.add_argument("--batch-size", type=int, default=100, help="images attacked together")
    add_numbers(q, seed=0)
    add_common(q, run_one_pixel, out="output folder")


def _targets(text: str, num_classes: int) -> list[int]:
    if text == "all":
        return list(range(num_classes))
    try:
        classes = [int(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--target must be 'all' or class numbers, got {text!r}") from err
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad or not classes:
        raise ValueError(f"--target classes must be in [0, {num_classes - 1}], got {text!r}")
    return classes


def _de(model: torch.nn.Module, args: argparse.Namespace, **kwargs: Any) -> DifferentialEvolution:
    return DifferentialEvolution(model, args.pixels, args.popsize, args.generations, max_queries=args.max_queries,
                                 strategy=args.strategy, mutation=args.mutation, crossover=args.crossover,
                                 seed=args.seed, **kwargs)


def _concat(parts: list[AttackResult]) -> AttackResult:
    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(p, name).detach().cpu() for p in parts])

    return AttackResult(cat("x_adv"), cat("success"), cat("steps"), cat("queries"), cat("adv_logits"),
                        cat("clean_logits"), cat("target"), {"zero_tol": parts[0].extras.get("zero_tol", 1e-3),
                                                             "low": parts[0].extras.get("low", 0.0)})


def run_sparse(args: argparse.Namespace) -> int:
    if args.n_per_class < 1:
        raise ValueError(f"--n-per-class must be >= 1, got {args.n_per_class}")
    # Under torchrun each process generates the images of its share of the classes; rank 0 writes them all.
    args.device = distributed.init_from_env(args.device)
    data = load_data(args)
    model = load_model(args, data)
    shape = data.shape
    classes = _targets(args.target, data.num_classes)
    args.max_pixels = max_pixels(args.max_pixels, shape)
    attack: SparseConfident | DifferentialEvolution
    if args.method == "l1":
        attack = SparseConfident(model, confidence=args.confidence, max_pixels=args.max_pixels, lam=args.lam,
                                 steps=args.steps, lr=args.lr, optimizer=args.optimizer, start=args.start,
                                 mask_fraction=args.mask_fraction, zero_tol=args.zero_tol, seed=args.seed)
    else:
        attack = _de(model, args, confidence=args.confidence)
    out = claim(args, {"--model": model})
    parts = []
    # Each call of generate re-seeds the attack (seed=args.seed), so a class's images do not depend on which
    # process makes them or in which order: the sharded result equals the single-process one.
    mine = [classes[i] for i in distributed.shard_indices(len(classes), distributed.rank(), distributed.world_size())]
    bar = tqdm(mine, desc=f"sparse ({args.method})", disable=args.no_progress or not distributed.is_main(),
               dynamic_ncols=True)
    for c in bar:
        targets = torch.full((args.n_per_class,), c, dtype=torch.long, device=args.device)
        part = attack.generate(targets, shape)
        if args.method == "de":  # DE sets at most k pixels; success here also needs the L0 bound
            part.success &= pixel_l0(part.x_adv, attack.bounds[0], args.zero_tol) <= args.max_pixels
        parts.append(part)
        bar.set_postfix(success=f"{torch.cat([p.success.float() for p in parts]).mean().item():.2f}")
    if distributed.is_initialized():
        shares = distributed.all_gather_objects([(c, _concat([p])) for c, p in zip(mine, parts, strict=True)])
        made = dict(pair for share in shares for pair in share)
        parts = [made[c] for c in classes]
        if not distributed.is_main():
            return 0
    result = _concat(parts)
    result.extras["zero_tol"] = args.zero_tol
    if result.target is None:
        raise RuntimeError("a sparse-image result has targets")
    summary = sparse_summary(result)
    atomic_write_json(out / "result.json", {"model": args.model, "settings": recorded(args), "summary": summary},
                      kind="sparse-result")
    atomic_write_bytes(out / "images.safetensors", safetensors.torch.save(
        {"x": result.x_adv.contiguous(), "target": result.target, "success": result.success.to(torch.uint8)}))
    sparse_grid(out / "grid.png", result, title=f"{args.method} sparse images of {args.model}")
    o = summary["overall"]
    print(f"sparse ({args.method}) on {args.model}: n={o['n']}  success {o['success_rate']:.3f}  target prob "
          f"{o['target_prob']:.3f}  L0 {o['l0']:.1f}  L1 {o['l1']:.2f}  steps {o['steps']:.1f}  "
          f"queries {o['queries']:.0f}")
    print("  per class success / L0: " + "  ".join(f"{c}:{v['success_rate']:.2f}/{v['l0']:.0f}"
                                                  for c, v in summary["per_class"].items()))
    print(f"wrote {out}/result.json, {out}/grid.png, {out}/images.safetensors")
    return 0


def run_one_pixel(args: argparse.Namespace) -> int:
    data = load_data(args)
    model = load_model(args, data)
    x, y = subset(data, args.n, args.seed)
    attack = _de(model, args, loss=args.loss, target=args.target, confidence=args.confidence)
    out = claim(args, {"--model": model, "data": (x, y)})
    name = f"de-{args.pixels}px"
    report, batch = evaluate_attack(attack, x, y, name=name, batch_size=args.batch_size, device=args.device,
                                    progress=not args.no_progress)
    atomic_write_json(out / "summary.json", {"model": args.model, "settings": recorded(args), "budget": attack.budget,
                                             "report": report.to_dict()}, kind="attack-summary")
    adversarial_grid(out / "grid.png", batch, title=f"DE {args.pixels} pixel(s) ({args.strategy}) on {args.model}")
    print(format_report(report))
    print(f"  query budget {attack.budget} per image")
    print(f"wrote {out}/summary.json, {out}/grid.png")
    return 0

