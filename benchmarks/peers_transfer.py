"""alva's MI-, DI-, TI- and MI-DI-TI-FGSM against torchattacks', same substitute, images and settings.

The substitute is the ``mlp`` trained on 10,000 MNIST training images with seed 1, as ``alva transfer`` and
``benchmarks/transfer_family.py`` train it (read from that benchmark's cache, trained there if missing). Both
libraries attack it on the fixed stratified subset of ``--n`` (1000) test images (seed 0), L-inf eps 0.3, 10 steps
of 0.03, from x; the images are then checked on each target (``mnist/cnn-small``, ``mnist/cnn-small-pgd``):

* ``mi-fgsm``: decay 1. alva ``MIFGSM``; torchattacks ``MIFGSM``.
* ``di-fgsm``: decay 0, probability 0.5, resize rate 0.9. alva ``DIFGSM`` (a size, a place and a coin per image,
  keyed per image); torchattacks ``DIFGSM`` (one size, place and coin for the whole batch, at each step).
* ``ti-fgsm``: decay 0, Gaussian kernel 5, 3 standard deviations, no input diversity. alva ``TIFGSM``;
  torchattacks ``TIFGSM(diversity_prob=0)``.
* ``mi-di-ti-fgsm``: decay 1, probability 0.5, kernel 5. alva ``MIFGSM(diversity_prob=0.5, kernel_size=5)``;
  torchattacks ``TIFGSM(decay=1, diversity_prob=0.5)``.

torchattacks' ``TIFGSM`` convolves with three channel groups whatever the images, so it cannot attack 1-channel
images: the TI rows of both libraries attack the same 3-channel view of the substitute (the mean of the channels
goes to the mlp; the images are MNIST repeated in 3 channels) and the targets see the mean of the channels of the
result (still within eps of the image).

Each row: success on each target (misclassified, clean errors included), success on the substitute, and the CPU
seconds of the attack on the substitute (process time, the best of ``--repeats`` (3) runs after a warm-up on 8
images; alva's also hold its success check of every iterate and one forward pass at the last one), one thread.

Runs with the peers' environment: ``PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers_transfer.py``
(torchattacks is imported here only).

Usage::

    python benchmarks/peers_transfer.py [--n 1000] [--repeats 3] [--json benchmarks/results/peers_transfer.json]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from transfer_family import substitute

import alva.models
from alva.attacks import DIFGSM, MIFGSM, TIFGSM
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
EPS, ALPHA, STEPS, KERNEL = 0.3, 0.03, 10, 5
TARGETS = ("mnist/cnn-small", "mnist/cnn-small-pgd")


class ThreeChannels(nn.Module):
    """``model`` on the mean of the channels of its input: a 3-channel view of a 1-channel classifier."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.mean(dim=1, keepdim=True))


def alva_methods(model: nn.Module, model3: nn.Module) -> dict[str, Method]:
    common = {"eps": EPS, "alpha": ALPHA, "steps": STEPS, "seed": 0}
    return {
        "mi-fgsm": lambda x, y: MIFGSM(model, **common)(x, y).x_adv,
        "di-fgsm": lambda x, y: DIFGSM(model, **common)(x, y).x_adv,
        "ti-fgsm": lambda x, y: TIFGSM(model3, kernel_size=KERNEL, **common)(x, y).x_adv,
        "mi-di-ti-fgsm": lambda x, y: MIFGSM(model3, diversity_prob=0.5, kernel_size=KERNEL, **common)(x, y).x_adv,
    }


def torchattacks_methods(model: nn.Module, model3: nn.Module) -> dict[str, Method]:
    import torchattacks

    common = {"eps": EPS, "alpha": ALPHA, "steps": STEPS}
    ti = {"kernel_name": "gaussian", "len_kernel": KERNEL, "nsig": 3, "resize_rate": 0.9}
    return {
        "mi-fgsm": torchattacks.MIFGSM(model, decay=1.0, **common),
        "di-fgsm": torchattacks.DIFGSM(model, decay=0.0, resize_rate=0.9, diversity_prob=0.5, **common),
        "ti-fgsm": torchattacks.TIFGSM(model3, decay=0.0, diversity_prob=0.0, **ti, **common),
        "mi-di-ti-fgsm": torchattacks.TIFGSM(model3, decay=1.0, diversity_prob=0.5, **ti, **common),
    }


def timed(method: Method, x: torch.Tensor, y: torch.Tensor, repeats: int) -> tuple[torch.Tensor, float]:
    """The result of ``method`` (its first timed run) and its least CPU seconds over ``repeats`` runs."""
    torch.manual_seed(0)
    method(x[:8], y[:8])  # warm-up
    best, first = float("inf"), None
    for _ in range(repeats):
        torch.manual_seed(0)
        started = time.process_time()
        x_adv = method(x, y).detach()
        best = min(best, time.process_time() - started)
        first = x_adv if first is None else first
    assert first is not None
    return first, best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", default="runs/transfer_family/substitutes")
    p.add_argument("--json", default="benchmarks/results/peers_transfer.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x, y = fixed_subset(*load_mnist("test", download=False), args.n, seed=0)
    train = load_mnist("train", download=False)
    model, _, _ = substitute("", None, "same-data", 1, "mlp", train, Path(args.cache))
    model3 = ThreeChannels(model)
    targets = {name: alva.models.load(name) for name in TARGETS}
    libraries = {"alva": alva_methods(model, model3), "torchattacks": torchattacks_methods(model, model3)}
    rows = []
    for attack in libraries["alva"]:
        three = attack in ("ti-fgsm", "mi-di-ti-fgsm")
        xs = x.repeat(1, 3, 1, 1) if three else x
        for library, methods in libraries.items():
            x_adv, seconds = timed(methods[attack], xs, y, args.repeats)
            seen = x_adv.mean(dim=1, keepdim=True) if three else x_adv
            with torch.no_grad():
                row = {"attack": attack, "library": library, "cpu_s": round(seconds, 3),
                       "max_linf": (seen - x).abs().amax().item(),
                       "success_on_substitute": (model(seen).argmax(1) != y).float().mean().item(),
                       **{f"success_{name}": (t(seen).argmax(1) != y).float().mean().item()
                          for name, t in targets.items()}}
            rows.append(row)
            print(f"{attack:14s} {library:12s} " + " ".join(f"{k} {v}" for k, v in row.items()
                                                           if k not in ("attack", "library")), flush=True)
    meta = {"command": " ".join(["python", *map(shlex.quote, sys.argv)]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "n": args.n, "repeats": args.repeats}
    atomic_write_json(Path(args.json), {"meta": meta, "rows": rows}, kind="transfer-peers")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
