"""alva's decision-based attacks against foolbox's and ART's, and their query efficiency.

``--part peers``: HopSkipJump (L2 and L-inf) and the Boundary Attack of alva, foolbox 3 and ART on the shipped
``mnist/cnn-small`` and ``mnist/cnn-small-pgd`` (their normalisation is inside the model, so every library gets
images in [0, 1]) and the same fixed stratified subset of ``--n`` MNIST test images (seed 0). The peers run with
their defaults but for the number of iterations (``--hsj-steps`` for both HopSkipJumps, ``--boundary-steps`` for
foolbox's Boundary, ``--art-boundary-iter`` for ART's), and every model evaluation they make is counted by a
wrapper around the model. alva then runs with ``max_queries`` set to the mean queries per image of each peer
(a hard per-image budget: alva never spends more on any image than the peer spent on average). Each row: the
success rate over the images the model classifies correctly (checked by the model at the returned point), the
median distance in the attack's norm over them (a failure counts as infinitely far), the mean queries per image,
and the process CPU seconds of the run.

``--part efficiency``: alva's ``hsj`` (L2 and L-inf), ``boundary`` and ``sign-opt`` at ``--budgets`` (100, 1000,
10000) queries per image: success rate, median distance, and the robust accuracy at L2 2.0 / L-inf 0.3.

Everything runs on one CPU thread. Peers are never a dependency of alva: run with a Python that has foolbox and
ART (``/work/peers-venv``-style), e.g.::

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/peers_decision.py --part peers --n 100
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/peers_decision.py --part efficiency --n 200
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alva import models
from alva.attacks import build
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json

SEED = 0
RESULTS = Path(__file__).resolve().parent / "results"


class Counting(nn.Module):
    """Counts the images the model evaluates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.rows = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x.to(torch.float32))  # ART hands over float64


def measure(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, norm: str) -> dict:
    """Success (the model's verdict at the returned points, inside the box) and the median distance (failures
    infinitely far) over the images of ``x``."""
    x_adv = x_adv.detach().float().view_as(x)
    inside = (x_adv >= -1e-6).all(dim=tuple(range(1, x.ndim))) & (x_adv <= 1 + 1e-6).all(dim=tuple(range(1, x.ndim)))
    with torch.no_grad():
        fooled = model(x_adv.clamp(0, 1)).argmax(1) != y
    success = fooled & inside
    delta = (x_adv - x).reshape(len(x), -1)
    dist = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
    dist = torch.where(success, dist, torch.full_like(dist, float("inf")))
    return {"success": round(success.float().mean().item(), 4), "median": round(dist.median().item(), 4)}


def timed(run, counter: Counting, n: int) -> tuple[torch.Tensor, float, float]:
    counter.rows = 0
    started = time.process_time()
    x_adv = run()
    return x_adv, time.process_time() - started, counter.rows / n


def foolbox_run(counter: Counting, x, y, group: str, args):
    import foolbox as fb

    fmodel = fb.PyTorchModel(counter, bounds=(0.0, 1.0), device="cpu")
    if group.startswith("hsj"):
        attack = fb.attacks.HopSkipJumpAttack(steps=args.hsj_steps, constraint=group.split("-")[1])
    else:
        attack = fb.attacks.BoundaryAttack(steps=args.boundary_steps)

    def run():
        torch.manual_seed(SEED)
        return attack(fmodel, x, y, epsilons=None)[1]

    return run


def art_run(counter: Counting, x, y, group: str, args):
    from art.attacks import evasion
    from art.estimators.classification import PyTorchClassifier

    classifier = PyTorchClassifier(counter, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                                   clip_values=(0.0, 1.0))
    if group.startswith("hsj"):
        attack = evasion.HopSkipJump(classifier, targeted=False, norm=2 if group == "hsj-l2" else np.inf,
                                     max_iter=args.hsj_steps, verbose=False)
    else:
        attack = evasion.BoundaryAttack(classifier, targeted=False, max_iter=args.art_boundary_iter, verbose=False)

    def run():
        np.random.seed(SEED)
        torch.manual_seed(SEED)
        return torch.from_numpy(attack.generate(x=x.numpy(), y=np.eye(10, dtype=np.float32)[y.numpy()]))

    return run


def alva_run(counter: Counting, x, y, group: str, budget: int):
    name, norm = ("hsj", group.split("-")[1]) if group.startswith("hsj") else ("boundary", "l2")
    attack = build(name, counter, max_queries=budget, seed=SEED, **({"norm": norm} if name == "hsj" else {}))
    return lambda: attack(x, y).x_adv


def peers(args, model_name: str, x, y) -> list[dict]:
    model = models.load(model_name)
    counter = Counting(model)
    rows = []
    for group in args.groups.split(","):
        norm = "linf" if group == "hsj-linf" else "l2"
        spent = []
        for library, make in (("foolbox", foolbox_run), ("art", art_run)):
            try:
                run = make(counter, x, y, group, args)
            except ImportError as error:
                print(f"{library}: not available ({error})")
                continue
            x_adv, cpu, queries = timed(run, counter, len(x))
            spent.append(int(queries))
            rows.append({"model": model_name, "group": group, "library": library, **measure(model, x, y, x_adv, norm),
                         "queries": round(queries, 1), "cpu_s": round(cpu, 2)})
            print(json.dumps(rows[-1]), flush=True)
        for budget in sorted(set(spent)) or [args.budget]:  # alva at each peer's budget (never more per image)
            x_adv, cpu, queries = timed(alva_run(counter, x, y, group, budget), counter, len(x))
            queries -= 2  # the two passes that report the logits are not queries
            rows.append({"model": model_name, "group": group, "library": "alva", "max_queries": budget,
                         **measure(model, x, y, x_adv, norm), "queries": round(queries, 1), "cpu_s": round(cpu, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def efficiency(args, model_name: str, x, y) -> list[dict]:
    model = models.load(model_name)
    rows = []
    for entry in args.attacks.split(","):
        name, norm = (entry[:3], entry[4:]) if entry.startswith("hsj-") else (entry, "l2")
        for budget in (int(b) for b in args.budgets.split(",")):
            attack = build(name, model, max_queries=budget, seed=SEED, **({"norm": norm} if name == "hsj" else {}))
            started = time.process_time()
            result = attack(x, y)
            cpu = time.process_time() - started
            eps = 2.0 if norm == "l2" else 0.3
            rows.append({"model": model_name, "attack": name, "norm": norm, "budget": budget,
                         "success": round(result.success.float().mean().item(), 4),
                         "median": round(result.distances.median().item(), 4),
                         f"success_at_{norm}_{eps:g}": round(1 - result.robust_accuracy(eps), 4),
                         "mean_queries": round(result.queries.float().mean().item(), 1), "cpu_s": round(cpu, 2)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("peers", "efficiency"), required=True)
    p.add_argument("--n", type=int, default=100, help="test images (fixed stratified subset, seed 0)")
    p.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    p.add_argument("--groups", default="hsj-l2,hsj-linf,boundary-l2")
    p.add_argument("--hsj-steps", type=int, default=5, help="iterations of foolbox's and ART's HopSkipJump")
    p.add_argument("--boundary-steps", type=int, default=1000, help="steps of foolbox's Boundary Attack")
    p.add_argument("--art-boundary-iter", type=int, default=100, help="iterations of ART's Boundary Attack")
    p.add_argument("--budget", type=int, default=1000, help="alva's budget when no peer ran")
    p.add_argument("--budgets", default="100,1000,10000", help="budgets of the efficiency part")
    p.add_argument("--attacks", default="hsj-l2,hsj-linf,boundary,sign-opt", help="attacks of the efficiency part")
    p.add_argument("--json", default=None, help="output file (default: benchmarks/results/decision_<part>.json)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x_all, y_all = load_mnist("test", download=False)
    x, y = fixed_subset(x_all, y_all, args.n, seed=SEED)
    rows = []
    for model_name in args.models.split(","):
        with torch.no_grad():
            correct = models.load(model_name)(x).argmax(1) == y
        xs, ys = x[correct], y[correct]  # only the images the model gets right are attacked
        rows += (peers if args.part == "peers" else efficiency)(args, model_name, xs, ys)
    out = Path(args.json) if args.json else RESULTS / f"decision_{args.part}.json"
    atomic_write_json(out, {"part": args.part, "n": args.n, "settings": vars(args), "rows": rows},
                      kind=f"decision-{args.part}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
