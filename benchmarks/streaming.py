"""Peak memory and speed of evaluating a folder of 3 x 224 x 224 images: streamed against in memory.

For each N (``--n``, default 1000 and 5000) a folder of N PNG images of 3 x 224 x 224 over 10 classes is
written (smooth random images, so that PNG compresses them as it does photographs, not noise; zlib level 1),
then the clean accuracy of a small conv net (seeded, untrained: only the reading and the forward passes are measured) is
computed over all N images twice, each in a fresh process:

- ``stream``: ``alva.data.load(folder, stream=True)`` and ``loader(batch_size, num_workers=W)``: the images are
  read batch by batch by W worker processes;
- ``memory``: ``alva.data.load(folder, stream=False, num_workers=W)`` reads every image into one float32
  tensor first, then the batches are slices of it (skipped when the tensor would exceed ``--memory-limit``).

With ``--task fgsm`` each run attacks the images instead (FGSM, eps 8/255, through
``alva.evaluation.evaluate_attack``, which takes the ``ImageData`` as it is: streamed batch by batch keeping the
per-sample figures and one batch of adversarial images, or in memory keeping every adversarial image).

Each run's seconds cover loading and evaluating; images/s is N over them. Peak RSS is the process's VmHWM,
and the largest peak of its worker processes. Streaming's peak should stay flat in N; in memory it grows by
N x 602 KB.

Usage: ``python benchmarks/streaming.py [--n 1000 5000] [--threads 1] [--workers 2] [--batch-size 100]
[--dir /tmp/alva-streaming] [--memory-limit-gb 4] [--task clean|fgsm] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

SHAPE = (3, 224, 224)
CLASSES = 10


def write_images(root: Path, n: int, seed: int = 0) -> None:
    """``n`` smooth random RGB PNGs in ``root/class-k/`` (files that are already there are kept)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        path = root / f"class-{i % CLASSES}" / f"{i:06d}.png"
        coarse = rng.random((8, 8, 3)).astype(np.float32)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        small = Image.fromarray((coarse * 255).astype(np.uint8), mode="RGB")
        small.resize(SHAPE[1:], Image.Resampling.BICUBIC).save(path, compress_level=1)


def folder_of(base: Path, pool: Path, n: int) -> Path:
    """A folder holding the first ``n`` images of ``pool`` (hard links: no extra disk)."""
    folder = base / f"n{n}"
    for i in range(n):
        name = Path(f"class-{i % CLASSES}") / f"{i:06d}.png"
        if not (folder / name).exists():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(pool / name, folder / name)
    return folder


def small_net() -> nn.Module:
    """A small conv net for 3 x 224 x 224 inputs and 10 classes (seeded)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 5, stride=4, padding=2), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, CLASSES)).eval()


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def clean_accuracy(model: nn.Module, data, batch_size: int, workers: int) -> float:
    correct = 0
    with torch.no_grad():
        for xb, yb in data.loader(batch_size, num_workers=workers):
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / len(data)


def fgsm_accuracy(model: nn.Module, data, batch_size: int, workers: int) -> float:
    from alva.attacks import FGSM
    from alva.evaluation import evaluate_attack

    report, _ = evaluate_attack(FGSM(model, eps=8 / 255), data, batch_size=batch_size, progress=False,
                                num_workers=workers)
    return report.robust_acc


def child(folder: str, path: str, batch_size: int, workers: int, task: str = "clean") -> dict:
    """One measured run in this process: load ``folder`` by ``path`` and compute the clean accuracy (``task``
    ``"clean"``) or the robust accuracy under FGSM (``"fgsm"``)."""
    from alva.data import load

    model = small_net()
    started = time.perf_counter()
    data = load(folder, stream=path == "stream", num_workers=workers)
    accuracy = (fgsm_accuracy if task == "fgsm" else clean_accuracy)(model, data, batch_size, workers)
    seconds = time.perf_counter() - started
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"path": path, "task": task, "n": len(data), "in_memory": data.in_memory, "seconds": seconds,
            "images_per_second": len(data) / seconds, "accuracy": accuracy,
            "peak_rss_mb": peak_rss_mb(), "worker_peak_rss_mb": workers_peak}


def measure(folder: Path, path: str, args: argparse.Namespace) -> dict:
    """:func:`child` in a fresh Python process (so each peak is its own)."""
    command = [sys.executable, __file__, "--child", path, "--folder", str(folder), "--threads", str(args.threads),
               "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--task", args.task]
    out = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: steadier when shared)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--dir", default="/tmp/alva-streaming", help="where the image folders are written")
    parser.add_argument("--memory-limit-gb", type=float, default=4.0,
                        help="skip the in-memory run when the float32 images would take more")
    parser.add_argument("--task", choices=["clean", "fgsm"], default="clean",
                        help="what each run computes: the clean accuracy, or FGSM through evaluate_attack")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--child", choices=["stream", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(child(args.folder, args.child, args.batch_size, args.workers, args.task)))
        return

    base = Path(args.dir)
    write_images(base / "pool", max(args.n))
    rows = []
    print(f"{'N':>6} {'path':>7} {'peak RSS MiB':>13} {'worker peak':>12} {'seconds':>8} {'images/s':>9} "
          f"{'stream/memory':>14}", flush=True)
    for n in args.n:
        folder = folder_of(base, base / "pool", n)
        runs = [measure(folder, "stream", args)]
        if n * int(np.prod(SHAPE)) * 4 <= args.memory_limit_gb * 2**30:
            runs.append(measure(folder, "memory", args))
        ratio = runs[0]["images_per_second"] / runs[1]["images_per_second"] if len(runs) == 2 else None
        for run in runs:
            shown = f"{ratio:.2f}" if ratio is not None and run["path"] == "stream" else ""
            print(f"{n:>6} {run['path']:>7} {run['peak_rss_mb']:>13.0f} {run['worker_peak_rss_mb']:>12.0f} "
                  f"{run['seconds']:>8.1f} {run['images_per_second']:>9.0f} {shown:>14}", flush=True)
        rows.extend({**run, "stream_over_memory": ratio} for run in runs)
    if args.json:
        settings = {"threads": args.threads, "workers": args.workers, "batch_size": args.batch_size,
                    "task": args.task}
        Path(args.json).write_text(json.dumps({"settings": settings, "runs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
