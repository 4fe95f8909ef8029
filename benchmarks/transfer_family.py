"""How well the transfer-enhancing FGSM family transfers from substitutes to PGD-trained MNIST models.

Targets: ``mnist/cnn-small-pgd`` and ``mnist/cnn-wide-pgd`` (``--targets``). Substitutes, trained as
``alva transfer`` trains them (``--arch``, default ``mlp``; 2 epochs, Adam 1e-3; the i-th with seed 1 + i: its
images, their order and its weights): ``same-data`` (10,000 training images with their labels, no query) and
``query-labels`` (5,000 training images labelled by the target, 5,000 queries per substitute). Each is used alone
(seed 1) and as an ensemble of three (seeds 1, 2, 3; mean logits, and one row with the mean of the losses).

Attacks on the substitute, L-inf eps 0.3 (``--eps``), seed 0:

* ``pgd-40``: PGD-40 with random start, step 2.5 eps / 40 (``alva transfer``'s default, the README's figure);
* ``i-fgsm``: 10 steps of eps / 10 from x (the family with every option off);
* ``mi-fgsm`` (decay 1), ``di-fgsm`` (probability 0.5, resize rate 0.9), ``ti-fgsm`` (kernel 5: 15 is the paper's
  for 299-pixel images), ``ti-fgsm-15`` (kernel 15), ``ni-fgsm``, ``vmi-fgsm`` (20 neighbours, beta 1.5): the
  defaults of the papers, 10 steps of eps / 10;
* ``mi-di-ti-fgsm``: decay 1, probability 0.5, kernel 5.

Each row: the success on the target (the target misclassifies the image, clean errors included, as in the
README's transfer table) over the ``--n`` (1000) test images of the fixed stratified subset (seed 0), the success
on the images the target classifies correctly, the white-box success on the substitute, the target queries (2 per
image) and the CPU seconds of the attack (the substitute's passes and the target's two queries), on one thread.
The white-box rows attack the target itself with PGD-40.

Substitutes are cached as safetensors under ``--cache`` (default ``runs/transfer_family/substitutes``, not in the
repository) and reused when the file exists.

Usage::

    python benchmarks/transfer_family.py [--n 1000] [--targets mnist/cnn-small-pgd,mnist/cnn-wide-pgd]
        [--arch mlp] [--json benchmarks/results/transfer_family.json]
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
from safetensors.torch import load_file, save_file
from torch import nn

import alva.models
from alva.attacks import DIFGSM, MIFGSM, NIFGSM, PGD, TIFGSM, VMIFGSM, Attack, TransferAttack, TransferFGSM
from alva.data import fixed_subset, load_mnist
from alva.tracking import atomic_write_json
from alva.training.loop import TrainSettings
from alva.training.substitute import substitute_data, train_substitute

Factory = Callable[[nn.Module, float], Attack]
SEED = 0
TI_KERNEL = 5

ATTACKS: dict[str, Factory] = {
    "pgd-40": lambda m, eps: PGD(m, eps=eps, steps=40, seed=SEED),
    "i-fgsm": lambda m, eps: TransferFGSM(m, eps=eps, seed=SEED),
    "mi-fgsm": lambda m, eps: MIFGSM(m, eps=eps, seed=SEED),
    "di-fgsm": lambda m, eps: DIFGSM(m, eps=eps, seed=SEED),
    "ti-fgsm": lambda m, eps: TIFGSM(m, eps=eps, kernel_size=TI_KERNEL, seed=SEED),
    "ti-fgsm-15": lambda m, eps: TIFGSM(m, eps=eps, kernel_size=15, seed=SEED),
    "ni-fgsm": lambda m, eps: NIFGSM(m, eps=eps, seed=SEED),
    "vmi-fgsm": lambda m, eps: VMIFGSM(m, eps=eps, seed=SEED),
    "mi-di-ti-fgsm": lambda m, eps: MIFGSM(m, eps=eps, diversity_prob=0.5, kernel_size=TI_KERNEL, seed=SEED),
}
MODES = {"same-data": 10000, "query-labels": 5000}  # training images (queried labels) per substitute


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000, help="test images (fixed stratified subset, seed 0)")
    p.add_argument("--targets", default="mnist/cnn-small-pgd,mnist/cnn-wide-pgd")
    p.add_argument("--arch", default="mlp", help="the substitutes' architecture")
    p.add_argument("--eps", type=float, default=0.3)
    p.add_argument("--attacks", default=",".join(ATTACKS))
    p.add_argument("--ensemble-size", type=int, default=3)
    p.add_argument("--cache", default="runs/transfer_family/substitutes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="benchmarks/results/transfer_family.json")
    return p.parse_args(argv)


def substitute(target_name: str, target: nn.Module, mode: str, seed: int, arch: str, train: tuple[torch.Tensor, ...],
               cache: Path) -> tuple[nn.Module, int, float]:
    """The substitute of ``mode`` with ``seed`` (from the cache, else trained): model, queries, CPU seconds."""
    owner = "any" if mode == "same-data" else target_name.replace("/", "-")
    path = cache / f"{arch}-{mode}-{owner}-seed{seed}.safetensors"
    model = alva.models.create(arch, in_shape=(1, 28, 28), num_classes=10)
    queries = 0 if mode == "same-data" else MODES[mode]
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval(), queries, 0.0
    started = time.process_time()
    model, queries = train_substitute(target if mode == "query-labels" else None,
                                      substitute_data(*train, MODES[mode], seed), mode=mode, query_budget=MODES[mode],
                                      architecture=arch, settings=TrainSettings(epochs=2, lr=1e-3, seed=seed),
                                      seed=seed)
    seconds = time.process_time() - started
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model.eval(), queries, seconds


def measure(target: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Success on the target (all images, and those it classifies correctly) and CPU seconds of one call."""
    started = time.process_time()
    result = attack(x, y)
    seconds = time.process_time() - started
    correct = result.clean_logits.argmax(1) == y
    row = {"success": result.success.float().mean().item(),
           "success_on_correct": (result.success & correct).sum().item() / max(int(correct.sum()), 1),
           "target_queries_per_image": result.queries.float().mean().item(), "cpu_s": round(seconds, 2),
           "max_linf": (result.x_adv - x).abs().amax().item()}
    if "substitute_success" in result.extras:
        row["success_on_substitute"] = result.extras["substitute_success"].float().mean().item()
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = fixed_subset(*load_mnist("test", download=False), args.n, seed=0)
    train = load_mnist("train", download=False)
    attacks = args.attacks.split(",")
    rows: list[dict] = []

    def emit(row: dict) -> None:
        rows.append(row)
        print(f"{row['target']:22s} {row['substitutes']:28s} {row['attack']:15s} success {row['success']:.3f} "
              f"(on correct {row['success_on_correct']:.3f}) cpu {row['cpu_s']:.1f}s", flush=True)

    for target_name in args.targets.split(","):
        target = alva.models.load(target_name)
        white = measure(target, ATTACKS["pgd-40"](target, args.eps), x, y)
        emit({"target": target_name, "substitutes": "none (white-box on the target)", "attack": "pgd-40", **white})
        for mode in MODES:
            trained = [substitute(target_name, target, mode, 1 + i, args.arch, train, Path(args.cache))
                       for i in range(args.ensemble_size)]
            for count, ensemble in ((1, "logits"), (args.ensemble_size, "logits"), (args.ensemble_size, "loss")):
                if ensemble == "loss" and count == 1:
                    continue
                models = [m for m, _, _ in trained[:count]]
                label = f"{count} {args.arch} {mode}" + (f" ({ensemble})" if count > 1 else "")
                names = attacks if ensemble == "logits" else ["mi-fgsm", "mi-di-ti-fgsm"]
                for name in names:
                    attack = TransferAttack(target, models, lambda m, name=name: ATTACKS[name](m, args.eps),
                                            eps=args.eps, ensemble=ensemble, seed=SEED)
                    emit({"target": target_name, "substitutes": label, "substitute_mode": mode, "count": count,
                          "ensemble": ensemble, "attack": name,
                          "training_queries": sum(q for _, q, _ in trained[:count]),
                          "substitute_train_cpu_s": round(sum(s for _, _, s in trained[:count]), 2),
                          **measure(target, attack, x, y)})
    meta = {"command": " ".join(["python", *map(shlex.quote, sys.argv)]),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads, "n": args.n,
            "eps": args.eps, "arch": args.arch, "ti_kernel": TI_KERNEL}
    atomic_write_json(Path(args.json), {"meta": meta, "rows": rows}, kind="transfer-family")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
