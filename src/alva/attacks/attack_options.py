"""The pieces every registry entry is made of: :class:`Option` (a setting of an attack), :class:`AttackSpec` (an
attack with its options) and the options many attacks share. :mod:`alva.attacks.registry` gathers the entries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from alva.attacks.base import Attack
from alva.attacks.errors import AttackInputError

__all__ = ["COMMON", "EOT", "EPS", "NORM", "NORM_L1", "AttackSpec", "Option", "common_options", "optional_float",
           "optional_int"]


@dataclass(frozen=True)
class Option:
    """A setting of an attack: its constructor keyword, type, default and meaning."""

    name: str
    type: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def parse(self, text: str) -> Any:
        """The value of ``text`` (as typed on a command line)."""
        if self.type is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise AttackInputError(f"{self.name} takes true or false, got {text!r}")
            return text.lower() in ("true", "1", "yes")
        if self.choices is not None and text not in self.choices:
            raise AttackInputError(f"{self.name} must be one of {self.choices}, got {text!r}")
        return self.type(text)


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: ``cls`` is built as ``cls(model, **settings)`` with settings among ``options``."""

    name: str
    cls: type[Attack]
    summary: str
    options: tuple[Option, ...]

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise AttackInputError(f"{self.name} has no option {name!r}; it has {[o.name for o in self.options]}")

    def build(self, model: nn.Module, **settings: Any) -> Attack:
        for name in settings:
            self.option(name)
        return self.cls(model, **settings)


def optional_float(text: str) -> float | None:
    return None if text.lower() == "none" else float(text)


def optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


COMMON = (
    Option("loss", str, "ce", "what the attack maximises and what counts as success: ce or margin"),
    Option("target", str, None, "targets chosen by a rule (random, least-likely); none: untargeted"),
    Option("early_stop", bool, False, "stop working on each sample once it succeeds"),
    Option("seed", int, None, "seeds the attack's random numbers and random targets"),
)
EPS = Option("eps", float, 0.3, "radius of the ball around x, in the units of norm")
NORM = Option("norm", str, "linf", "the threat model", ("linf", "l2"))
NORM_L1 = Option("norm", str, "linf", "the threat model (l1: l1-APGD, Croce and Hein 2021)", ("linf", "l2", "l1"))
EOT = Option("eot_iter", int, 1, "gradients averaged per step (expectation over transformation)")



def common_options(*, loss: str = "ce", early_stop: bool = False, targeted: bool = True) -> tuple[Option, ...]:
    loss_option = Option("loss", str, loss, COMMON[0].help + (", dlr" if loss == "dlr" else ""))
    stop = Option("early_stop", bool, early_stop, COMMON[2].help)
    return (loss_option, *((COMMON[1],) if targeted else ()), stop, COMMON[3])
