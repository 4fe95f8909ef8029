"""Cost of one epoch of each adversarial training objective: against standard training, and against a hand-written
floor of the same recipe, measured in one run.

    python benchmarks/training_cost.py --n 6000 --repeats 3 --threads 1

Two tables, both on ``--n`` MNIST training images, ``cnn-small``, batch 128, Adam at lr 1e-3, seed 0:

1. Seconds per epoch of alva's ``fit`` with each objective and its ratio to standard training.
2. alva's ``fit`` against a floor: the cheapest loop one could write by hand for the same recipe, in the style of
   Wong et al.'s ``fast_adversarial`` code: for each batch (the same batches, in the same order), the attack on the
   input only (the model in eval mode, as alva makes its examples; ``torch.autograd.grad`` for the input alone),
   then one weight step. Same eps, step size, steps and start as alva's objective:

   * ``pgd-10``: PGD, eps 0.3, 10 steps of 2.5 eps / 10 from a uniform random start; cross-entropy at the PGD point.
   * ``trades-10``: the KL divergence to the clean prediction maximised by 10 sign steps of 2.5 eps / 10 from
     ``x + 0.001 N(0, 1)``, then ``CE(f(x), y) + 6 KL(f(x) || f(x'))`` on one pass over clean and adversarial.
   * ``fgsm-rs``: Wong et al.'s fast FGSM, one step of 1.25 eps from a uniform random start, projected; after the
     epoch, the guard alva's ``FastFGSM`` runs: PGD-10 accuracy on 512 training images (Wong et al. check PGD
     on a training batch every epoch for early stopping), written by hand too.

   No metrics, no checks, no schedule, no bookkeeping: what a training epoch cannot do without.

The floor and alva run alternately within each repeat (the order rotated from repeat to repeat), each from the same
initial weights, so that load on the machine touches both alike; the tables give medians, and the floor table also
the median of the per-repeat ratios. ``--cpu-time`` gives the floor table in process CPU seconds, which load from
other processes on a shared machine changes far less than wall-clock seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from alva.data import fixed_subset, load_mnist
from alva.data.loaders import make_loader
from alva.models import create
from alva.training import TRADES, FastFGSM, FGSMMix, PGDTraining, Standard, TrainSettings, fit

EPS = 0.3
STEPS = 10
BETA = 6.0
GOAL = 1.10  # the bound on alva / floor per epoch
Data = tuple[torch.Tensor, torch.Tensor]
Epoch = Callable[[nn.Module, Data, TrainSettings], None]


def alva_epoch(objective_factory: Callable[[], object]) -> Epoch:
    def run(model: nn.Module, data: Data, settings: TrainSettings) -> None:
        fit(model, data, settings, objective=objective_factory(), progress=False)

    return run


# ------------------------------------------------------------------------------------------------------ floors

def linf_steps(model: nn.Module, x: torch.Tensor, start: torch.Tensor, loss_of: Callable[[torch.Tensor], torch.Tensor],
               eps: float, alpha: float, steps: int) -> torch.Tensor:
    """``steps`` signed gradient steps of ``loss_of(logits)`` on the input from ``start``, projected onto the eps
    ball around ``x`` and [0, 1] (one interval per pixel, computed once; in-place updates)."""
    lower, upper = (x - eps).clamp_(min=0.0), (x + eps).clamp_(max=1.0)
    x_adv = start
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of(model(x_adv)), x_adv)
        x_adv = x_adv.detach().add_(grad.sign_(), alpha=alpha).clamp_(lower, upper)
    return x_adv


def uniform_start(x: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + torch.rand_like(x).mul_(2 * eps).sub_(eps)).clamp_(0.0, 1.0)


def floor_loop(step: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]) -> Epoch:
    """An epoch: for each batch ``step`` gives the loss (making its examples in eval mode), then one Adam step."""

    def run(model: nn.Module, data: Data, settings: TrainSettings) -> None:
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
        torch.manual_seed(settings.seed)
        for x, y in make_loader(*data, settings.batch_size, shuffle=True, seed=settings.seed, epoch=0):
            model.eval()
            loss = step(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def pgd_step(eps: float, alpha: float, steps: int) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]:
    def step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = linf_steps(model, x, uniform_start(x, eps),
                           lambda logits: F.cross_entropy(logits, y, reduction="sum"), eps, alpha, steps)
        model.train()
        return F.cross_entropy(model(x_adv), y)

    return step


def trades_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        clean_prob = F.softmax(model(x), dim=1)
    start = (x + 0.001 * torch.randn_like(x)).clamp_(0.0, 1.0)
    x_adv = linf_steps(model, x, start,
                       lambda logits: F.kl_div(F.log_softmax(logits, dim=1), clean_prob, reduction="sum"),
                       EPS, 2.5 * EPS / STEPS, STEPS)
    model.train()
    logits = model(torch.cat([x, x_adv]))
    clean, adv = logits[: len(x)], logits[len(x):]
    return F.cross_entropy(clean, y) + BETA * F.kl_div(F.log_softmax(adv, dim=1), F.softmax(clean, dim=1),
                                                       reduction="batchmean")


def floor_fgsm_rs(model: nn.Module, data: Data, settings: TrainSettings) -> None:
    """Wong et al.'s fast FGSM epoch, then the guard: PGD-10 accuracy on 512 training images."""
    floor_loop(pgd_step(EPS, 1.25 * EPS, 1))(model, data, settings)
    x, y = data[0][:512], data[1][:512]
    model.eval()
    x_adv = linf_steps(model, x, uniform_start(x, EPS), lambda logits: F.cross_entropy(logits, y, reduction="sum"),
                       EPS, 2.5 * EPS / STEPS, STEPS)
    with torch.no_grad():
        (model(x_adv).argmax(1) == y).float().mean().item()


# ------------------------------------------------------------------------------------------------------ timing

def seconds(epoch: Epoch, data: Data, seed: int) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one epoch from fresh weights of ``seed``."""
    torch.manual_seed(seed)
    model = create("cnn-small")
    started, started_cpu = time.perf_counter(), time.process_time()
    epoch(model, data, TrainSettings(epochs=1, batch_size=128, seed=seed))
    return time.perf_counter() - started, time.process_time() - started_cpu


def measure(methods: dict[str, Epoch], data: Data, repeats: int, clock: int = 0) -> dict[str, list[float]]:
    """Seconds of each method per repeat, the methods interleaved (order rotated per repeat) after one warm-up;
    ``clock`` 0: wall-clock seconds, 1: process CPU seconds."""
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    seconds(methods[names[0]], (data[0][:256], data[1][:256]), 0)
    for r in range(repeats):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            both = seconds(methods[name], data, r)
            times[name].append(both[clock])
            print(f"  repeat {r + 1}/{repeats}  {name:<24} {both[0]:7.2f} s, CPU {both[1]:7.2f} s", file=sys.stderr,
                  flush=True)
    return times


def standard_table(data: Data, repeats: int) -> list[str]:
    objectives = {"standard": Standard, "fgsm-mix (eps 0.25)": lambda: FGSMMix(0.25),
                  "fast (eps 0.3)": lambda: FastFGSM(EPS), "pgd, 10 steps": lambda: PGDTraining(EPS, steps=STEPS),
                  "trades, 10 steps": lambda: TRADES(EPS, steps=STEPS)}
    times = {name: statistics.median(t) for name, t in
             measure({name: alva_epoch(make) for name, make in objectives.items()}, data, repeats).items()}
    reference = times["standard"]
    return ["| objective | seconds per epoch | ratio to standard |", "|---|---:|---:|",
            *(f"| {name} | {s:.2f} | {s / reference:.2f} |" for name, s in times.items())]


def floor_table(data: Data, repeats: int, clock: int) -> list[str]:
    pairs = {
        "pgd-10": (floor_loop(pgd_step(EPS, 2.5 * EPS / STEPS, STEPS)), lambda: PGDTraining(EPS, steps=STEPS)),
        "trades-10": (floor_loop(trades_step), lambda: TRADES(EPS, beta=BETA, steps=STEPS)),
        "fgsm-rs": (floor_fgsm_rs, lambda: FastFGSM(EPS)),
    }
    rows = ["| objective | floor s/epoch | alva s/epoch | ratio | per-repeat ratios (median, range) | goal |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, (floor, objective) in pairs.items():
        times = measure({f"{name} floor": floor, f"{name} alva": alva_epoch(objective)}, data, repeats, clock)
        floor_s, alva_s = times[f"{name} floor"], times[f"{name} alva"]
        paired = [a / f for a, f in zip(alva_s, floor_s, strict=True)]
        ratio = statistics.median(alva_s) / statistics.median(floor_s)
        rows.append(f"| {name} | {statistics.median(floor_s):.2f} | {statistics.median(alva_s):.2f} | {ratio:.3f} | "
                    f"{statistics.median(paired):.3f} ({min(paired):.3f}-{max(paired):.3f}) | {GOAL:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=6000, help="training images (default 6000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per method (default 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--only", choices=("standard", "floor"), default=None, help="print one of the two tables")
    parser.add_argument("--cpu-time", action="store_true",
                        help="floor table in process CPU seconds (steadier than wall-clock on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = fixed_subset(*load_mnist("train"), args.n, seed=0)
    header = (f"One epoch on {args.n} MNIST training images, cnn-small, batch 128, {torch.get_num_threads()} "
              f"thread(s), torch {torch.__version__}, median of {args.repeats}")
    if args.only != "floor":
        print(f"\n{header}\n" + "\n".join(standard_table(data, args.repeats)))
    if args.only != "standard":
        clock = "process CPU" if args.cpu_time else "wall-clock"
        print(f"\n{header}; alva's fit against the hand-written floor, {clock} seconds\n"
              + "\n".join(floor_table(data, args.repeats, int(args.cpu_time))))


if __name__ == "__main__":
    main()
