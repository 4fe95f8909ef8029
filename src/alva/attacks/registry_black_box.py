"""The registry entries of the black-box families (decision-based, score-based) and of the gradient attacks made to
transfer from a substitute; :mod:`alva.attacks.registry` lists them after the white-box attacks."""

from __future__ import annotations

from alva.attacks.attack_options import AttackSpec

__all__ = ["DECISION_SPECS", "SCORE_SPECS", "TRANSFER_SPECS"]


# Decision-based attacks: they see only the predicted label.
DECISION_SPECS: tuple[AttackSpec, ...] = (
)


# Score-based attacks with gradient estimation: they see the model's outputs, never a gradient.
SCORE_SPECS: tuple[AttackSpec, ...] = (
)


# Gradient attacks made to transfer from a substitute to the model under attack.
TRANSFER_SPECS: tuple[AttackSpec, ...] = (
)
