"""Run by ``tests/evaluation/test_distributed_eval.py`` under ``torchrun --nproc_per_node 2``: PGD through
``attack_figures`` and the quick strong evaluation on MNIST test images in a gloo process group; every rank
writes what it got back, for comparison with one process."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset

from alva import distributed
from alva.attacks import PGD
from alva.data import ImageData, fixed_subset, load_mnist
from alva.evaluation import attack_figures, report_from
from alva.evaluation.strong import strong_evaluation
from alva.models import load

N, BATCH = 300, 64
STRONG = ("apgd-ce", "apgd-t", "square")
EPS_PGD, EPS_STRONG = 0.15, 0.1


def images() -> tuple[torch.Tensor, torch.Tensor]:
    return fixed_subset(*load_mnist("test", download=False), N, seed=4)


def streamed(x: torch.Tensor, y: torch.Tensor) -> ImageData:
    return ImageData("mnist", "test", (1, 28, 28), tuple(str(i) for i in range(10)), "multiclass", y,
                     samples=TensorDataset(x, y))


def compute() -> dict[str, Any]:
    """PGD (in memory and streamed) and the quick strong evaluation (in memory and from a loader)."""
    model = load("mnist/cnn-small")
    x, y = images()
    attack = PGD(model, eps=EPS_PGD, steps=10, seed=7)
    out: dict[str, Any] = {}
    for name, source, labels in (("pgd", x, y), ("pgd-streamed", streamed(x, y), None)):
        figures, kept = attack_figures(attack, source, labels, batch_size=BATCH, progress=False, keep=80)
        out[name] = {"figures": figures.tensors(), "report": report_from("pgd", figures).to_dict(),
                     "kept": kept.x_adv}
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    for name, source, labels, attacks in (("strong", x, y, STRONG), ("strong-loader", loader, None, STRONG[:2])):
        result = strong_evaluation(model, source, labels, eps=EPS_STRONG, version="quick", attacks=attacks, seed=1,
                                   batch_size=BATCH, progress=False, warn=False, sanity=name == "strong", sanity_n=40,
                                   keep=80)
        out[name] = {"broken_by": result.broken_by, "adv_logits": result.adv_logits, "queries": result.queries,
                     "steps": result.steps, "x_adv": result.x_adv, "report": result.report.to_dict(),
                     "table": [{k: v for k, v in r.items() if k != "seconds"} for r in result.table],
                     "warnings": result.warnings, "settings": result.settings}
    return out


def main(out: Path) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        torch.save(compute(), out / f"rank{distributed.rank()}.pt")
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
