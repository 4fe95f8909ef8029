"""The ``alva`` command and its subcommands (``alva --help`` lists them)."""

from __future__ import annotations

import argparse
import sys

from alva import distributed
from alva.cli import (
    alva_cmd,
    attack_cmd,
    data_cmd,
    demo_cmd,
    detect_cmd,
    eval_cmd,
    fakeclass_cmd,
    gan_cmd,
    genattack_cmd,
    label_cmd,
    report_cmd,
    sparse_cmd,
    train_cmd,
    transfer_cmd,
    zoo_cmd,
)
from alva.cli.run_folder import release


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and names each option's default, unless its help already does."""

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and action.option_strings and action.default not in (None, False, argparse.SUPPRESS):
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose help names the defaults and that takes only whole option names (``--res`` is
    refused, not expanded to ``--resume``); its sub-parsers are of the same kind."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs["allow_abbrev"] = False
        if kwargs["formatter_class"] is argparse.RawDescriptionHelpFormatter:
            kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="alva", description="Adversarial machine learning for PyTorch.")
    parser.add_argument("--version", action="version", version=f"alva {__import__('alva').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo_cmd, train_cmd, gan_cmd, attack_cmd, eval_cmd, label_cmd, alva_cmd, zoo_cmd, sparse_cmd,
                   fakeclass_cmd, transfer_cmd, detect_cmd, report_cmd, genattack_cmd, data_cmd):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("\nstopped: finished epochs and parts are saved; rerun the same command (with --resume for "
              "training) to go on", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"alva {args.command}: error: {err}", file=sys.stderr)
        return 2
    finally:
        release()  # let go of the run folder's lock
        distributed.shutdown()  # leave the process group of a torchrun run, if any


if __name__ == "__main__":
    sys.exit(main())
