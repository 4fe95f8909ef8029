"""The registry of training objectives by name (``alva train --objective NAME``), filled here and nowhere else."""

from __future__ import annotations

from alva.training.adversarial import ADVERSARIAL_OBJECTIVES
from alva.training.fast_guards import FAST_GUARD_OBJECTIVES
from alva.training.objectives import AsymmetricLoss, MultiLabelBCE, Objective, Standard

OBJECTIVES: dict[str, type[Objective]] = {"standard": Standard, "bce": MultiLabelBCE, "asl": AsymmetricLoss,
                                          **ADVERSARIAL_OBJECTIVES, **FAST_GUARD_OBJECTIVES}


def get_objective(name: str | Objective, **settings) -> Objective:
    """The objective called ``name``, built with ``settings``; an :class:`Objective` is returned as it is."""
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown training objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name](**settings)
