"""alva's score-based attacks against the peers' on equal terms: SPSA against torchattacks' ``SPSA`` (ART and
foolbox have none), SimBA (DCT and pixel bases) against ART's ``SimBA``.

Same model (the shipped ``mnist/cnn-small`` and ``mnist/cnn-small-pgd``; their normalisation is part of the
model, so every library gets images in [0, 1]), the same fixed stratified subset of ``--n`` MNIST test images
(seed 0) and the same query budget ``--queries`` per image (rows of an earlier run in ``--json`` on the same images
and budget are kept; a row measured again replaces its own):

* ``spsa-linf``: L-inf eps ``--eps`` (0.3), ``--samples`` (8) pairs of queries per step, delta 0.01, Adam with
  learning rate ``--lr`` (0.05), margin loss. torchattacks ``SPSA`` runs ``nb_iter = queries // (2 * samples)``
  steps on every image (no success check, no early stop); alva ``spsa`` gets ``n_queries = queries`` (its check
  of each iterate counted, so it takes fewer steps) and stops an image at success.
* ``simba-dct``, ``simba-pixel``: step 0.2, no ball (the paper's setting), each library's own order of the
  directions (alva: DCT frequencies in bands of a quarter of the image side, random within a band; ART: its
  defaults, ``freq_dim=4, stride=1``); ART ``SimBA`` with ``max_iter = (queries - 1) // 2`` (two queries per
  direction, after one on the clean image), one image at a time (its only mode); alva ``simba`` with
  ``n_queries = queries``.

Each row gives the success rate over all images (an image the model gets wrong counts as a success), the mean
number of model evaluations per image counted by a wrapper around the model (every library's evaluations, the
clean one included; torchattacks' final check is not part of its attack and is not counted), the median L2 norm
of the successful perturbations, process CPU seconds and wall-clock seconds of one run, all on one thread.
Peer libraries are imported here only; a missing one is skipped with the reason printed.

Usage (the peers live in their own environment)::

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/peers-venv/bin/python benchmarks/peers_score.py [--n 200]
        [--queries 1000] [--models mnist/cnn-small,mnist/cnn-small-pgd] [--json benchmarks/results/peers_score.json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva import models
from alva.attacks import SPSA, SimBA
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json

Runner = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class Counted(nn.Module):
    """The model, counting the rows it is asked about."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.model(x)


def alva_spsa(args) -> Runner:
    def run(model, x, y):
        return SPSA(model, eps=args.eps, n_queries=args.queries, samples=args.samples, delta=0.01, lr=args.lr,
                    seed=0)(x, y).x_adv
    return run


def torchattacks_spsa(args) -> Runner:
    import torchattacks  # a peer, not a dependency

    def run(model, x, y):
        attack = torchattacks.SPSA(model, eps=args.eps, delta=0.01, lr=args.lr,
                                   nb_iter=args.queries // (2 * args.samples), nb_sample=args.samples,
                                   max_batch_size=args.samples)
        return attack(x, y)
    return run


def alva_simba(basis: str, args) -> Runner:
    def run(model, x, y):
        return SimBA(model, n_queries=args.queries, step=0.2, basis=basis, seed=0)(x, y).x_adv
    return run


def art_simba(basis: str, args) -> Runner:
    import numpy as np
    from art.attacks.evasion import SimBA as ARTSimBA  # a peer, not a dependency
    from art.estimators.classification import PyTorchClassifier

    def run(model, x, y):
        probabilities = nn.Sequential(model, nn.Softmax(dim=1))
        classifier = PyTorchClassifier(probabilities, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                       nb_classes=10, clip_values=(0.0, 1.0))
        attack = ARTSimBA(classifier, attack="dct" if basis == "dct" else "px", max_iter=(args.queries - 1) // 2,
                          epsilon=0.2, verbose=False)
        np.random.seed(0)
        return torch.from_numpy(attack.generate(x.numpy(), np.eye(10, dtype=np.float32)[y.numpy()]))
    return run


GROUPS: dict[str, list[tuple[str, Callable[[Any], Runner]]]] = {
    "spsa-linf": [("alva", alva_spsa), ("torchattacks", torchattacks_spsa)],
    "simba-dct": [("alva", lambda a: alva_simba("dct", a)), ("art", lambda a: art_simba("dct", a))],
    "simba-pixel": [("alva", lambda a: alva_simba("pixel", a)), ("art", lambda a: art_simba("pixel", a))],
}


def measure(runner: Runner, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    counted = Counted(model)
    cpu, wall = time.process_time(), time.perf_counter()
    x_adv = runner(counted, x, y).detach().clamp(0, 1)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    with torch.no_grad():
        success = model(x_adv).argmax(1) != y
    d = (x_adv - x).reshape(len(x), -1).norm(dim=1)[success]
    return {"success": round(success.double().mean().item(), 4), "mean_queries": round(counted.rows / len(x), 1),
            "median_l2": round(d.median().item(), 3) if len(d) else math.inf,
            "max_linf": round((x_adv - x).abs().max().item(), 4), "cpu_s": round(cpu, 1), "wall_s": round(wall, 1)}


def earlier_rows(path: Path, n: int, queries: int) -> list[dict[str, Any]]:
    """The rows of an earlier run in ``path`` on the same images and budget (a new row replaces its own)."""
    if not path.exists():
        return []
    rows = json.loads(path.read_text())["rows"]
    return [r for r in rows if r["n"] == n and r["queries"] == queries]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--models", default="mnist/cnn-small,mnist/cnn-small-pgd")
    p.add_argument("--groups", default=",".join(GROUPS))
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="benchmarks/results/peers_score.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    x, y = fixed_subset(*load_mnist("test", download=False), args.n, seed=0)
    rows = earlier_rows(Path(args.json), args.n, args.queries)
    for model_name in args.models.split(","):
        model = models.load(model_name).eval()
        for group in args.groups.split(","):
            for library, make in GROUPS[group]:
                try:
                    runner = make(args)
                except ImportError as err:
                    print(f"{group} {library}: skipped ({err})")
                    continue
                runner(model, x[:4], y[:4])  # warm-up
                row = {"model": model_name, "group": group, "library": library, "n": args.n,
                       "queries": args.queries, **measure(runner, model, x, y)}
                rows = [r for r in rows if (r["model"], r["group"], r["library"]) != (model_name, group, library)]
                rows.append(row)
                print(row, flush=True)
                atomic_write_json(Path(args.json), {"date": datetime.date.today().isoformat(), "settings": vars(args),
                                                    "rows": rows}, kind="score-peers")  # after each row


if __name__ == "__main__":
    main()
