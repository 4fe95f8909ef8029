"""Options shared by several commands."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def add_common(parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace], int] | None = None, *,
               out: str | None = None, resume: str | None = None, run_folder: bool = False) -> None:
    """``--device``, ``--no-progress``, ``--data-root``, ``--skip-weights-check`` and ``--debug``; with
    ``handler``, the function that runs the command; with ``out`` (its help), a required ``--out``; with
    ``resume`` (its help), a ``--resume`` flag; with ``out`` or ``run_folder`` (a command that adds its own
    ``--out``), ``--overwrite``."""
    if handler is not None:
        parser.set_defaults(handler=handler)
    if out is not None:
        parser.add_argument("--out", required=True, help=out)
    if resume is not None:
        parser.add_argument("--resume", action="store_true", help=resume)
    if out is not None or run_folder:
        parser.add_argument("--overwrite", action="store_true",
                            help="--out holds an earlier run: remove it and start again (what is removed is "
                                 "listed)")
    add_once(parser, "--skip-weights-check", action="store_true",
             help="load weights whose SHA-256 differs from their card's (weights changed on purpose)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_once(parser, "--data-root", default=None,
             help="folder with the MNIST IDX files (default: $ALVA_MNIST_ROOT, else data/mnist)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on error")


THREADS_HELP = ("torch CPU threads (default: $ALVA_THREADS, else $OMP_NUM_THREADS, else the cores that other jobs "
                "leave free; under torchrun, each process's share of them)")


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads`` on ``parser`` and on every command and action under it, so that it may stand before or after
    the command's name (``alva --threads 1 eval ...`` or ``alva eval ... --threads 1``). Only ``parser`` has a
    default (None: choose); under it the option is absent unless given, so it does not undo one given before the
    command's name."""
    parser.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    pending = [parser]
    while pending:
        for action in pending.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                for command in dict.fromkeys(action.choices.values()):  # aliases name the same parser
                    command.add_argument("--threads", type=int, default=argparse.SUPPRESS, help=THREADS_HELP)
                    pending.append(command)


def add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add ``flag`` unless ``parser`` has it already (an option that several groups of options offer)."""
    try:
        parser.add_argument(flag, **kwargs)
    except argparse.ArgumentError:  # argparse refuses a second option of the same name
        pass


def paragraph(text: str) -> str:
    """``text``, written over several source lines, as one paragraph for argparse (the help keeps it as given)."""
    return " ".join(text.split())


def add_numbers(parser: Any, **defaults: int | float) -> None:
    """Options of ``parser`` (or of an argument group) without help text, one per keyword (``batch_size=64``
    gives ``--batch-size``), of the type of their default (``int`` or ``float``)."""
    for name, default in defaults.items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)


def settings_from(cls: type[T], args: argparse.Namespace, prefix: str = "", **given: Any) -> T:
    """The settings dataclass ``cls`` built from the options named ``prefix`` + one of its fields, then from
    ``given``."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    picked = {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix) and k[len(prefix):] in names}
    return cls(**{**picked, **given})


def finish(summary: dict[str, Any], written: str) -> int:
    """Print ``summary`` on one line and what was ``written``; the command's exit status (0)."""
    print(", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()))
    print(f"wrote {written}")
    return 0


def recorded(args: argparse.Namespace) -> dict[str, Any]:
    """The options of a command as a result file records them."""
    return {k: v for k, v in vars(args).items() if k not in ("handler", "func")}
