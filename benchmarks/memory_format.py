"""Which weight layout is faster on this CPU for each convolutional architecture: torch's default (NCHW) or
channels-last (NHWC)?

    python benchmarks/memory_format.py --threads 1 --repeats 7

For each architecture, a freshly initialised model (alva's ``create``, so its normalisation wrapper included)
gets one batch of random images and does what attacks and training do most: one forward and one backward pass
for the gradient of the input (``input grad``) and one for the gradients of the weights (``weight grad``). The
two layouts are two copies of the same weights: ``default`` (NCHW) and ``channels-last`` (the weights converted
with ``.to(memory_format=torch.channels_last)``; the images stay NCHW, as alva's data gives them). Each pass runs
once as warm-up, then ``--repeats`` times, the two layouts interleaved so that drift in load hits both alike.
The table gives the median milliseconds and the ratio channels-last / default (below 1: channels-last is
faster), and the layout ``create`` gives the architecture now (``Architecture.channels_last``).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from alva.models.classifiers import ARCHITECTURES, create

# (architecture, image shape, batch)
CASES = (("cnn-small", (1, 28, 28), 256), ("cnn-wide", (1, 28, 28), 256), ("cnn-large", (1, 28, 28), 256),
         ("cnn", (1, 28, 28), 256), ("cnn-gmp", (1, 56, 56), 200), ("resnet18", (3, 32, 32), 32))


def input_gradient(model: nn.Module, x: torch.Tensor) -> None:
    leaf = x.clone().requires_grad_(True)
    torch.autograd.grad(model(leaf).sum(), leaf)


def weight_gradient(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).sum().backward()


def seconds(work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def compare(name: str, shape: tuple[int, int, int], batch: int, repeats: int) -> dict[str, float]:
    """Median seconds of both passes in both layouts for one architecture."""
    torch.manual_seed(0)
    default = create(name, in_shape=shape).train(name == "resnet18")
    default = default.to(memory_format=torch.contiguous_format)
    channels_last = copy.deepcopy(default).to(memory_format=torch.channels_last)
    x = torch.rand(batch, *shape)
    figures: dict[str, list[float]] = {}
    for task, pass_ in (("input grad", input_gradient), ("weight grad", weight_gradient)):
        for model in (default, channels_last):
            pass_(model, x)  # warm-up
        for repeat in range(repeats):
            order = [("default", default), ("channels-last", channels_last)][:: 1 if repeat % 2 else -1]
            for layout, model in order:
                figures.setdefault(f"{task} {layout}", []).append(seconds(lambda m=model, p=pass_: p(m, x)))
    return {key: statistics.median(values) for key, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats}")
    print("| architecture | input | batch | input grad ms (default / channels-last) | ratio | weight grad ms "
          "(default / channels-last) | ratio | create gives |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for name, shape, batch in CASES:
        m = compare(name, shape, batch, args.repeats)
        cells = []
        for task in ("input grad", "weight grad"):
            a, b = m[f"{task} default"], m[f"{task} channels-last"]
            cells += [f"{a * 1e3:.1f} / {b * 1e3:.1f}", f"{b / a:.2f}"]
        layout = "channels-last" if ARCHITECTURES[name].channels_last else "default"
        print(f"| {name} | {'x'.join(map(str, shape))} | {batch} | {' | '.join(cells)} | {layout} |")


if __name__ == "__main__":
    main()
