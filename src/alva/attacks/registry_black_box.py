"""The registry entries of the black-box families (decision-based, score-based) and of the gradient attacks made to
transfer from a substitute; :mod:`alva.attacks.registry` lists them after the white-box attacks."""

from __future__ import annotations

from alva.attacks.attack_options import COMMON, AttackSpec, Option, optional_float, optional_int
from alva.attacks.base import Attack
from alva.attacks.boundary_attack import BoundaryAttack
from alva.attacks.hop_skip_jump import HopSkipJump
from alva.attacks.sign_opt import SignOPT

__all__ = ["DECISION_SPECS", "SCORE_SPECS", "TRANSFER_SPECS"]


# Decision-based attacks: they see only the predicted label.
_DECISION_COMMON = (
    Option("eps", optional_float, None, "none: minimum norm; a radius: success needs the distance within it"),
    Option("init_attempts", int, 100, "most uniform-noise draws per sample for a starting point"),
    Option("early_stop", bool, False, "with eps: stop querying a sample once within eps"),
    COMMON[1], COMMON[3],
)


def _decision(name: str, cls: type[Attack], summary: str, own: tuple[Option, ...]) -> AttackSpec:
    """A decision-based attack's entry: its budget, its own options, then the options they all share."""
    budget = Option("max_queries", int, 1000, "labels read per sample, the clean one included (a hard budget)")
    return AttackSpec(name, cls, summary, (budget, *own, *_DECISION_COMMON))


DECISION_SPECS: tuple[AttackSpec, ...] = (
    _decision("hsj", HopSkipJump, "HopSkipJump: label-only, minimum norm, by gradient-direction estimates at the "
              "decision boundary (Chen et al. 2020)", (
                  Option("init_evals", int, 100, "labels of the first gradient estimate (times sqrt(iteration))"),
                  Option("max_evals", int, 10000, "most labels of one gradient estimate"),
                  Option("gamma", float, 1.0, "sets the binary-search precision and the probe radius"),
                  Option("steps", optional_int, None, "most iterations; none: until the budget is spent"),
                  Option("norm", str, "l2", "the norm minimised (linf: the paper's L-inf form)", ("l2", "linf")))),
    _decision("boundary", BoundaryAttack, "Boundary Attack: label-only random walk along the decision boundary "
              "towards x, minimum L2 (Brendel et al. 2018)", (
                  Option("spherical_step", float, 0.01, "first relative size of the orthogonal step"),
                  Option("source_step", float, 0.01, "first relative size of the step towards x"),
                  Option("step_adaptation", float, 1.5, "factor by which the step sizes grow or shrink"),
                  Option("stats_every", int, 10, "steps between checks of the orthogonal step (and adaptations)"))),
    _decision("sign-opt", SignOPT, "Sign-OPT: label-only, minimum L2, by signs of directional derivatives of the "
              "distance to the boundary along a direction (Cheng et al. 2020)", (
                  Option("directions", int, 200, "random directions per sign estimate"),
                  Option("alpha", float, 0.2, "first step size on the direction"),
                  Option("beta", float, 0.001, "first probe size"),
                  Option("tolerance", float, 1e-3, "precision of the binary searches, relative to the distance"))),
)


# Score-based attacks with gradient estimation: they see the model's outputs, never a gradient.
SCORE_SPECS: tuple[AttackSpec, ...] = (
)


# Gradient attacks made to transfer from a substitute to the model under attack.
TRANSFER_SPECS: tuple[AttackSpec, ...] = (
)
