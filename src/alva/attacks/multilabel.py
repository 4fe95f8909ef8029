"""Attacks on multi-label classifiers (one logit per label, label on when its logit is > 0).

Plug these losses into any attack of alva (``PGD(model, eps, loss=SingleLabelFlip(), target="positive")``):

- :class:`NaiveBCE` maximises the binary cross-entropy of all labels: the single-label recipe applied
  to a multi-label model, which pushes every label away from where it was.
- :class:`SingleLabelFlip` flips one chosen label (on to off, or off to on) while a hold term keeps every
  other label where it was; success, and so early stop, means the target flipped and no other label did.

Labels ``y`` are the N x K multi-hot labels to hold, usually the model's clean predictions
``(model(x) > 0).float()``; ``target`` is the index of the label to flip, per sample.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alva.attacks.errors import AttackInputError, check_index_tensor, finite
from alva.attacks.keyed import Uniform
from alva.attacks.losses import AttackLoss


def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """Multi-hot predictions: a label is on where its sigmoid probability is above 0.5."""
    return (logits > 0).float()


def _label_at(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return t.gather(1, index[:, None]).squeeze(1)


class MultiLabelLoss(AttackLoss):
    """Label checks, targets and the flip test shared by multi-label losses."""

    target_rules = ("random", "positive", "negative")

    def check_labels(self, y: torch.Tensor, num_outputs: int | None) -> torch.Tensor:
        if y.ndim != 2:
            raise AttackInputError(f"multi-label y must be N x K multi-hot, got shape {tuple(y.shape)}")
        if y.is_complex() or not ((y == 0) | (y == 1)).all():
            raise AttackInputError("multi-label y must hold only 0 and 1")
        if num_outputs is not None and y.shape[1] != num_outputs:
            raise AttackInputError(f"y has {y.shape[1]} labels but the model has {num_outputs} outputs")
        return y.float()

    def check_targets(self, target: torch.Tensor, y: torch.Tensor, num_outputs: int) -> torch.Tensor:
        return check_index_tensor(target, len(y), num_outputs, "label indices").to(y.device)

    def pick_targets(self, rule: str, y: torch.Tensor, clean_logits: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        """A label index per sample: any label (``random``), one that is on (``positive``) or off (``negative``).

        A sample with no label of the asked kind gets a uniformly random label.
        """
        weights = torch.ones_like(y)
        if rule == "positive":
            weights = y.clone()
        elif rule == "negative":
            weights = 1 - y
        empty = weights.sum(1) == 0
        weights[empty] = 1.0
        # Inverse-CDF sampling from one keyed number per sample.
        cdf = weights.to(torch.float64).cumsum(1)
        u = uniform(1).to(cdf) * cdf[:, -1:]
        return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=y.shape[1] - 1)

    def flipped(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _label_at(predicted_labels(logits), target) != _label_at(y, target)


class NaiveBCE(MultiLabelLoss):
    """Maximise the binary cross-entropy of all labels against ``y`` (what a single-label attack does).

    Success: the target label flipped (targeted), or any label changed (untargeted).
    """

    def __call__(self, logits, y, target):
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1)

    def success(self, logits, y, target):
        if target is None:
            return (predicted_labels(logits) != y).any(1)
        return self.flipped(logits, y, target)

    def __repr__(self) -> str:
        return "NaiveBCE()"


class SingleLabelFlip(MultiLabelLoss):
    """Flip label ``target`` and hold the others: maximise
    ``-BCE(z_t, 1 - y_t) - hold * sum_{j != t} BCE(z_j, y_j)``.

    Success: the target flipped and every other label kept its value. ``hold`` weighs keeping the
    other labels against flipping the target.
    """

    def __init__(self, hold: float = 1.0) -> None:
        self.hold = finite("hold", hold)

    def __call__(self, logits, y, target):
        if target is None:
            raise AttackInputError("SingleLabelFlip needs the label to flip: pass target= or a target rule")
        wanted = y.clone()
        wanted.scatter_(1, target[:, None], 1 - _label_at(y, target)[:, None])
        per_label = F.binary_cross_entropy_with_logits(logits, wanted, reduction="none")
        flip_term = _label_at(per_label, target)
        hold_term = per_label.sum(1) - flip_term
        return -flip_term - self.hold * hold_term

    def success(self, logits, y, target):
        if target is None:
            raise AttackInputError("SingleLabelFlip needs the label to flip: pass target= or a target rule")
        changed = predicted_labels(logits) != y
        others_changed = changed.sum(1) - _label_at(changed, target).int()
        return self.flipped(logits, y, target) & (others_changed == 0)

    def __repr__(self) -> str:
        return f"SingleLabelFlip(hold={self.hold})"
