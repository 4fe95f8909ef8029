"""The ``alva`` command and its subcommands (``alva --help`` lists them)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from safetensors import SafetensorError

from alva import distributed
from alva.cli import (
    alva_cmd,
    attack_cmd,
    checks,
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
from alva.cli.common import add_threads
from alva.cli.run_folder import release
from alva.threads import set_threads


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
        self.given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self.given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Name an unknown option (``alva --ver``) rather than the command that is missing after it."""
        unknown = [a for a in self.given if a.startswith("--") and a.split("=")[0] not in self._option_string_actions]
        if message.startswith("the following arguments are required") and unknown:
            message = f"unrecognized arguments: {' '.join(unknown)} (option names are never abbreviated)"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="alva", description="Adversarial machine learning for PyTorch.")
    parser.add_argument("--version", action="version", version=f"alva {__import__('alva').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (demo_cmd, train_cmd, gan_cmd, attack_cmd, eval_cmd, label_cmd, alva_cmd, zoo_cmd, sparse_cmd,
                   fakeclass_cmd, transfer_cmd, detect_cmd, report_cmd, genattack_cmd, data_cmd):
        module.register(commands)
    add_threads(parser)
    return parser


SUBCOMMANDS = ("alva_command", "gan_command", "advgan_command", "atgan_command", "action")
"""Where the sub-parsers of the commands with actions (``alva generate``, ``data info``...) store the action."""

USER_ERRORS = (ValueError, TypeError, LookupError, OSError, RuntimeError, SafetensorError)
"""What bad input raises: a one-line message and exit status 2, the traceback only with ``--debug``."""


def command_name(args: argparse.Namespace) -> str:
    """The command as typed: ``train``, ``alva generate``, ``data info``."""
    action = next((getattr(args, d) for d in SUBCOMMANDS if isinstance(getattr(args, d, None), str)), None)
    return f"{args.command} {action}" if action else str(args.command)


def one_line(err: BaseException) -> str:
    """The message of ``err`` on one line, with its type where the message alone would not say what failed."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    if isinstance(err, (KeyError, IndexError, TypeError, SafetensorError)) or not str(err).strip():
        text = f"{type(err).__name__}: {text}"
    return text


def unexpected(err: BaseException) -> bool:
    """Whether ``err`` comes from deeper down (torch, a user's model) than alva's own checks, whose messages say
    all there is to say."""
    return isinstance(err, (RuntimeError, LookupError, TypeError, SafetensorError)) and \
        not type(err).__module__.startswith("alva")


def main(argv: list[str] | None = None) -> int:
    """Run the command of ``argv`` (default: the process's arguments); its exit status: 0 done, 2 bad input
    (one line on stderr, the traceback with ``--debug``), 130 stopped by the user."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        checks.check_options(args)  # before the command reads, loads or creates anything
        args.threads = set_threads(args.threads).threads  # recorded with the settings of the commands that do
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("\nstopped: finished epochs and parts are saved; rerun the same command (with --resume for "
              "training) to go on", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        if getattr(args, "debug", False):
            raise
        hint = " (--debug shows the traceback)" if unexpected(err) else ""
        print(f"alva {command_name(args)}: error: {one_line(err)}{hint}", file=sys.stderr)
        return 2
    finally:
        release()  # let go of the run folder's lock
        distributed.shutdown()  # leave the process group of a torchrun run, if any


if __name__ == "__main__":
    sys.exit(main())
