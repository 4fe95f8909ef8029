"""The attacks of the strong evaluation and their settings per version, after AutoAttack (Croce and Hein 2020,
"Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free attacks"; the L1
version after Croce and Hein 2021, "Mind the box").

- ``standard`` is AutoAttack's standard version: APGD-CE, APGD-T (targeted DLR, the 9 most likely other
  classes), FAB-T (targeted FAB, 9 targets) and Square (5000 random-search steps, ``p_init`` 0.8, the schedule
  of ``p`` not rescaled, AutoAttack's L2 starting point), 100 steps each and one restart; under L1 APGD-CE has
  5 restarts and APGD-T 5 target classes, as AutoAttack sets them.
- ``plus`` is AutoAttack+: APGD-CE and APGD-DLR with 5 restarts, untargeted FAB with 5 restarts, Square,
  APGD-T and FAB-T, in that order.
- ``rand`` is AutoAttack's version for randomised defences: APGD-CE and APGD-DLR with the gradient averaged
  over 20 forward passes (expectation over transformation), one restart.
- ``quick`` is a cheaper first look: APGD-CE, APGD-T (3 targets) and Square with smaller budgets.

``with decision`` (:data:`EXTRAS`) adds HopSkipJump (Chen et al. 2020; 1000 labels per point, 500 in ``quick``)
after Square to any version, for models whose scores cannot be trusted (a flat or masked softmax that misleads
the score-based Square as much as the gradient attacks): it reads only the predicted labels.

FAB comes from :mod:`alva.attacks.fab`, imported when an evaluation first needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from alva.attacks.apgd import APGD, APGDTargeted
from alva.attacks.base import Attack
from alva.attacks.fab import FAB, FABTargeted
from alva.attacks.hop_skip_jump import HopSkipJump
from alva.attacks.norms import Norm, get_norm
from alva.attacks.square import Square
from alva.evaluation.strong_result import MEMBERS

__all__ = ["EXTRAS", "NORMS", "STANDARD", "VERSIONS", "MemberUnavailable", "Version", "build_member", "member_problem",
           "with_extras"]

NORMS = ("linf", "l2", "l1")
"""The threat models of the strong evaluation."""
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
"""AutoAttack's standard version, in its order."""


class MemberUnavailable(ValueError):
    """An attack of the ensemble has no form for the threat model (Square under L1)."""


@dataclass(frozen=True)
class Version:
    """A version of the ensemble: its attacks in order, the settings of every member, and changes under L1."""

    attacks: tuple[str, ...]
    options: Mapping[str, Mapping[str, Any]]
    l1: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def options_for(self, norm: str) -> dict[str, dict[str, Any]]:
        """The settings of every member under ``norm``."""
        changes = self.l1 if get_norm(norm).name == "l1" else {}
        return {name: {**self.options[name], **changes.get(name, {})} for name in MEMBERS}


EXTRAS = {"decision": "hsj"}
"""Members that ``with_`` adds to a version, by name: ``decision`` adds HopSkipJump after Square."""


def with_extras(attacks: tuple[str, ...], extras: tuple[str, ...]) -> tuple[str, ...]:
    """The version's ``attacks`` with the members of ``extras`` (names of :data:`EXTRAS`) after Square (at the end
    without Square)."""
    unknown = [e for e in extras if e not in EXTRAS]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; choose from {sorted(EXTRAS)}")
    added = tuple(EXTRAS[e] for e in extras if EXTRAS[e] not in attacks)
    at = attacks.index("square") + 1 if "square" in attacks else len(attacks)
    return (*attacks[:at], *added, *attacks[at:])


def _budgets(steps: int, targets: int, queries: int, **square: Any) -> dict[str, dict[str, Any]]:
    return {"apgd-ce": {"steps": steps, "restarts": 1},
            "apgd-t": {"steps": steps, "restarts": 1, "n_target_classes": targets},
            "apgd-dlr": {"steps": steps, "restarts": 1},
            "square": {"n_queries": queries, "p_init": 0.8, **square},
            "fab-t": {"steps": steps, "restarts": 1, "n_target_classes": targets},
            "fab": {"steps": steps, "restarts": 1},
            "hsj": {"max_queries": 1000 if queries > 1000 else 500}}


# alva's Square counts the clean query and the starting point's query in n_queries: 5002 gives AutoAttack's
# 5000 random-search steps. Its schedule of p is not rescaled and its L2 start is AutoAttack's.
_AUTOATTACK = _budgets(100, 9, 5002, rescale_schedule=False, l2_start="pairs")
_EOT = {"eot_iter": 20}

VERSIONS: dict[str, Version] = {
    "standard": Version(STANDARD, _AUTOATTACK, l1={"apgd-ce": {"restarts": 5}, "apgd-t": {"n_target_classes": 5}}),
    "plus": Version(("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
                    {**_AUTOATTACK, "apgd-ce": {"steps": 100, "restarts": 5}, "apgd-dlr": {"steps": 100, "restarts": 5},
                     "fab": {"steps": 100, "restarts": 5}}),
    "rand": Version(("apgd-ce", "apgd-dlr"),
                    {**_AUTOATTACK, **{name: {**_AUTOATTACK[name], **_EOT} for name in ("apgd-ce", "apgd-dlr")}}),
    "quick": Version(("apgd-ce", "apgd-t", "square"), _budgets(50, 3, 1000)),
}
"""The versions of the ensemble by name (see the module's description)."""


def member_problem(name: str, norm: str, options: Mapping[str, Any]) -> str | None:
    """Why the member ``name`` with ``options`` cannot run under ``norm`` here, or None when it can (settings
    that are wrong raise as they would in :func:`build_member`)."""
    try:
        build_member(name, torch.nn.Identity(), 1.0, norm, options, seed=0, bounds=(0.0, 1.0))
    except MemberUnavailable as error:
        return str(error)
    return None


def build_member(name: str, model: torch.nn.Module, eps: float, norm: str, options: Mapping[str, Any], *,
                 seed: int, bounds: tuple[float, float]) -> Attack:
    """The attack ``name`` of :data:`~alva.evaluation.strong_result.MEMBERS` with its ``options``; it stops on
    a sample once broken (only whether a sample breaks counts in the ensemble)."""
    common: dict[str, Any] = {"norm": norm, "early_stop": True, "seed": seed, "bounds": bounds}
    opts = dict(options)
    if name in ("apgd-ce", "apgd-dlr"):
        return APGD(model, eps, loss="ce" if name == "apgd-ce" else "dlr", **opts, **common)
    if name == "apgd-t":
        return APGDTargeted(model, eps, loss="dlr", **opts, **common)
    if name == "square":
        if type(get_norm(norm)).square_proposal is Norm.square_proposal:
            raise MemberUnavailable(f"alva's Square attack has no proposals under {norm}")
        return Square(model, eps, **opts, **common)
    if name == "hsj":
        if get_norm(norm).name not in HopSkipJump.norms:
            raise MemberUnavailable(f"HopSkipJump has no form for {norm}")
        return HopSkipJump(model, eps=eps, **opts, **common)
    if name in ("fab", "fab-t"):
        return (FABTargeted if name == "fab-t" else FAB)(model, eps=eps, **opts, **common)
    raise ValueError(f"unknown attack {name!r}; choose from {list(MEMBERS)}")
