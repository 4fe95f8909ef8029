"""The checks every command's options pass before the command reads data, loads a model or creates a file:
counts and sizes in range, every number finite, rates and shares in their interval, a device this machine has,
and an output path that can be made (not a file, under a folder that can be written to).

Each problem is an :class:`OptionError` naming the option, what it takes and what it got, on one line.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Iterable
from pathlib import Path

import torch

__all__ = ["AT_LEAST", "INTERVALS", "OptionError", "check_device", "check_numbers", "check_options", "check_out",
           "check_out_file"]


class OptionError(ValueError):
    """An option of a command that cannot be used as given (out of range, not finite, no such device...)."""


# Whole-number options by their destination, and the least value each takes (0 where 0 means "none" or "off").
AT_LEAST = {
    **dict.fromkeys(("batch_size", "chunk_size", "de_generations", "de_pixels", "de_popsize", "epochs",
                     "eval_samples", "eval_steps", "eval_test_size", "eval_train_size", "generations", "latent_dim",
                     "max_queries", "n", "n_critic", "n_eval", "n_per_class", "nn_pool_size", "per_class", "pixels",
                     "popsize", "queries", "reference_outputs", "reference_per_class", "reference_size",
                     "restarts", "rounds", "steps", "alva_steps", "attack_steps", "sparse_steps", "test_per_class",
                     "test_size", "threads", "train_size", "width"), 1),
    **dict.fromkeys(("de_per_class", "depth", "eval_size", "jacobian_rounds", "monitor_samples", "n_alva",
                     "n_sparse", "patience", "pretrain_epochs", "ramp_epochs", "reference_epochs", "sample"), 0),
}

# Real-valued options by their destination, and the interval each lies in, written as in mathematics.
INTERVALS = {
    **dict.fromkeys(("lr", "attack_lr", "mutation"), "(0, inf)"),
    **dict.fromkeys(("adv_weight", "alva_eps", "aux_fake_weight", "beta", "critic_weight", "dist_weight",
                     "gamma_neg", "gamma_pos", "gan_weight", "gp_lambda", "hinge_bound", "hinge_weight", "hold",
                     "lam", "weight_decay", "zero_tol"), "[0, inf)"),
    **dict.fromkeys(("confidence", "crossover", "min_fake_share", "mix", "threshold"), "[0, 1]"),
    **dict.fromkeys(("clip", "collapse_lr_factor", "ema", "fpr", "mask_fraction", "momentum"), "[0, 1)"),
}


def flag(dest: str) -> str:
    """The option of a destination: ``batch_size`` is ``--batch-size``."""
    return "--" + dest.replace("_", "-")


def inside(value: float, interval: str) -> bool:
    low, high = (float(part) for part in interval[1:-1].split(","))
    above = low < value if interval[0] == "(" else low <= value
    return above and (value < high if interval[-1] == ")" else value <= high)


def numbers_in(value: object) -> Iterable[float]:
    """The real numbers an option holds: itself, or the items of a list or tuple."""
    items = value if isinstance(value, (list, tuple)) else [value]
    return [v for v in items if isinstance(v, float)]


def check_numbers(args: argparse.Namespace) -> None:
    """Refuse a number that is not finite, a count below its least value, a rate outside its interval."""
    for dest, value in vars(args).items():
        if any(not math.isfinite(v) for v in numbers_in(value)):
            raise OptionError(f"{flag(dest)} must be a finite number, got {value}")
        if dest in AT_LEAST and isinstance(value, int) and not isinstance(value, bool) and value < AT_LEAST[dest]:
            raise OptionError(f"{flag(dest)} must be >= {AT_LEAST[dest]}, got {value}")
        if dest in INTERVALS and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and not inside(value, INTERVALS[dest]):
            raise OptionError(f"{flag(dest)} must be in {INTERVALS[dest]}, got {value}")


def check_device(text: str) -> None:
    """Refuse a device name torch does not know, or one this machine does not have (``cuda`` without a GPU)."""
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise OptionError(f"--device {text!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise OptionError(f"--device {text}: no CUDA GPU is available here (torch {torch.__version__}); "
                              "use --device cpu")
        if device.index is not None and device.index >= count:
            raise OptionError(f"--device {text}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise OptionError(f"--device {text}: the Apple MPS backend is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise OptionError(f"--device {text}: alva runs on cpu, cuda or mps")


def nearest_folder(path: Path) -> Path | None:
    """``path`` or the nearest folder above it that exists; None when a file stands in the way."""
    for candidate in (path.absolute(), *path.absolute().parents):
        if candidate.exists():
            return candidate if candidate.is_dir() else None
    return None


def check_creatable(out: Path, where: Path) -> None:
    """Refuse ``--out out`` when ``where`` (its folder) cannot be made or written to."""
    folder = nearest_folder(where)
    if folder is None:
        raise OptionError(f"--out {out}: a file stands on its path, so it cannot be created")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OptionError(f"--out {out}: cannot write there, {folder} is not writable")


def check_out(text: str) -> None:
    """Refuse an output folder that is a file, or that cannot be created (a file on its path, or a parent
    folder this user cannot write to)."""
    out = Path(text)
    if out.exists() and not out.is_dir():
        raise OptionError(f"--out {out} is a file, not a folder; give a folder")
    check_creatable(out, out)


def check_out_file(text: str) -> None:
    """Refuse an output file that is a folder, or whose folder cannot be made or written to."""
    out = Path(text)
    if out.is_dir():
        raise OptionError(f"--out {out} is a folder; give the file to write, e.g. {out / 'report.html'}")
    check_creatable(out, out.absolute().parent)


def check_options(args: argparse.Namespace) -> None:
    """Every check of this module that applies to the options ``args`` holds."""
    check_numbers(args)
    device = getattr(args, "device", None)
    if isinstance(device, str):
        check_device(device)
    out = getattr(args, "out", None)
    if not isinstance(out, str):
        return
    if getattr(args, "command", None) == "report" or getattr(args, "format", None) == "npz":
        check_out_file(out)
    else:
        check_out(out)
