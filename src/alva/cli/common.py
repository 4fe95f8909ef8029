"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_once(parser, "--data-root", default=None,
             help="folder with the MNIST IDX files (default: $ALVA_MNIST_ROOT, else data/mnist)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on error")


def add_once(parser: argparse.ArgumentParser, flag: str, **kwargs) -> None:
    """Add ``flag`` unless ``parser`` has it already (an option that several groups of options offer)."""
    if flag not in parser._option_string_actions:
        parser.add_argument(flag, **kwargs)


def csv_floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from err


def paragraph(text: str) -> str:
    """``text``, written over several source lines, as one paragraph for argparse (the help keeps it as given)."""
    return " ".join(text.split())
