"""Per-sample objectives that an attack maximises, for untargeted and targeted attacks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Objective = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Cross-entropy of the true class (to raise), or minus that of the target class (Madry et al. 2018)."""
    loss = F.cross_entropy(logits, labels, reduction="none")
    return -loss if targeted else loss


def margin(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Carlini-Wagner margin: best other logit minus the true one, or the target logit minus the best other.

    Carlini and Wagner, "Towards Evaluating the Robustness of Neural Networks" (2017), loss f_6.
    Positive exactly when the attack has succeeded.
    """
    own = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(dim=1)
    return own - others if targeted else others - own


LOSSES: dict[str, Objective] = {"ce": cross_entropy, "margin": margin}


def get_loss(name: str | Objective) -> Objective:
    """The objective called ``name`` (``ce`` or ``margin``, alias ``cw``), or a callable as it is."""
    if callable(name):
        return name
    key = {"cw": "margin", "cross-entropy": "ce", "xent": "ce"}.get(str(name).lower(), str(name).lower())
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)} (or 'cw')")
    return LOSSES[key]


def is_success(logits: torch.Tensor, labels: torch.Tensor, targeted: bool) -> torch.Tensor:
    """Per-sample success: predicted as the target, or predicted as anything but the true label."""
    pred = logits.argmax(dim=1)
    return pred == labels if targeted else pred != labels
