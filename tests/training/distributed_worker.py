"""Run by ``tests/training/test_distributed.py`` under ``torchrun --nproc_per_node 2``: train and generate in a
gloo process group and write the results to the folder given, for comparison with a single-process run."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tiny_models import TinyConditional  # this folder: the script's own, first on sys.path
from torch import nn

from alva import distributed
from alva.models import create
from alva.training.adversarial import FGSMMix
from alva.training.augment import GenerationSettings, generate_dataset
from alva.training.loop import TrainSettings, fit
from alva.training.objectives import Standard

SETTINGS = TrainSettings(epochs=1, batch_size=64, lr=0.05, optimizer="sgd", seed=0)
GENERATION = GenerationSettings(n=40, eps=0.5, chunk_size=10, seed=3, keep="all")  # 4 chunks: 2 per rank
# `alva sparse` by differential evolution, 3 classes: rank 0 makes classes 0 and 2, rank 1 class 1.
SPARSE = ["sparse", "--method", "de", "--target", "0,1,2", "--n-per-class", "2", "--generations", "3", "--popsize",
          "10", "--no-progress"]
OBJECTIVES = {"standard": Standard, "fgsm-mix": lambda: FGSMMix(eps=0.1, eval_size=0)}




def data(n: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def heldout(n: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def model() -> nn.Module:
    torch.manual_seed(0)
    return create("cnn-small", in_shape=(1, 28, 28))


def train(objective: str) -> tuple[nn.Module, list[dict]]:
    net = model()
    history = fit(net, data(), SETTINGS, objective=OBJECTIVES[objective](), eval_data=heldout(), progress=False)
    return net, history


def generation_models() -> tuple[nn.Module, nn.Module]:
    return TinyConditional(), model().eval()


def main(out: Path) -> None:
    torch.set_num_threads(1)
    distributed.init_from_env("cpu")
    try:
        for name in OBJECTIVES:
            net, history = train(name)
            if distributed.is_main():
                torch.save({"model": net.state_dict(), "history": history}, out / f"{name}.pt")
            else:  # evaluated once, by the main process, and shared: every process logs the same figures
                torch.save({"history": history}, out / f"{name}-rank{distributed.rank()}.pt")
        generate_dataset(*generation_models(), None, out / "generated", GENERATION, progress=False)
        from alva.cli.main import main as alva

        assert alva([*SPARSE, "--out", str(out / "sparse")]) == 0  # joins the group and leaves it at the end
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
