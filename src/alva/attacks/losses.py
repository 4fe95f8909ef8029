"""Per-sample objectives that an attack maximises, for untargeted and targeted attacks."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from alva.attacks.errors import AttackInputError, check_index_tensor, check_label_range
from alva.attacks.keyed import Uniform

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


class AttackLoss:
    """What an attack maximises and what counts as success, for one kind of labels.

    ``y`` holds the labels of the batch; ``target`` is ``None`` for an untargeted attack, else a
    per-sample tensor whose meaning the loss defines (a class for class labels, a label index to
    flip for multi-label outputs). Attacks call only these methods, so a loss that fits another kind
    of model (see :mod:`alva.attacks.multilabel`) makes every attack work on it unchanged.
    """

    target_rules: tuple[str, ...] = ()

    def __call__(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def success(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def check_labels(self, y: torch.Tensor, num_outputs: int | None) -> torch.Tensor:
        """``y`` in the form the loss uses, or :class:`AttackInputError`; range checks need ``num_outputs``."""
        raise NotImplementedError

    def check_targets(self, target: torch.Tensor, y: torch.Tensor, num_outputs: int) -> torch.Tensor:
        raise NotImplementedError

    def pick_targets(self, rule: str, y: torch.Tensor, clean_logits: torch.Tensor, uniform: Uniform) -> torch.Tensor:
        """Targets by ``rule``; a random rule reads one number per sample from ``uniform`` (keyed per sample by
        the attack, so that a sample's target does not depend on its batch)."""
        raise NotImplementedError


class ClassLoss(AttackLoss):
    """A loss on class labels (``y``: N integer labels): wraps ``fn(logits, labels, targeted)``."""

    target_rules = ("random", "least-likely")

    def __init__(self, fn: Objective) -> None:
        self.fn = fn

    def __call__(self, logits, y, target):
        return self.fn(logits, y if target is None else target, target is not None)

    def success(self, logits, y, target):
        return is_success(logits, y if target is None else target, target is not None)

    def check_labels(self, y, num_outputs):
        if y.ndim != 1 or y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
            raise AttackInputError(f"y must be a 1-D tensor of integer labels, got shape {tuple(y.shape)} "
                                   f"and dtype {y.dtype}")
        if num_outputs is None:
            if (y < 0).any():
                raise AttackInputError(f"labels must be >= 0, got {int(y.min())}")
            return y.long()
        check_label_range(y, num_outputs, "labels")
        return y.long()

    def check_targets(self, target, y, num_outputs):
        return check_index_tensor(target, len(y), num_outputs, "labels").to(y.device)

    def pick_targets(self, rule, y, clean_logits, uniform):
        num_classes = clean_logits.shape[1]
        if rule == "random":
            u = uniform(1)[:, 0].to(y.device)
            offset = 1 + (u * (num_classes - 1)).long().clamp_(max=num_classes - 2)
            return (y + offset) % num_classes
        return clean_logits.scatter(1, y[:, None], float("inf")).argmin(dim=1)  # least-likely

    def __repr__(self) -> str:
        return getattr(self.fn, "__name__", repr(self.fn))


def as_attack_loss(loss: str | Objective | AttackLoss) -> AttackLoss:
    """An :class:`AttackLoss` from a name (``ce``, ``margin``/``cw``), a per-sample function
    ``(logits, labels, targeted) -> loss``, or an :class:`AttackLoss` as it is."""
    if isinstance(loss, AttackLoss):
        return loss
    return ClassLoss(get_loss(loss))


class Confident(AttackLoss):
    """``loss`` whose success also needs the predicted class to have at least ``confidence`` probability
    (softmax of the outputs): a confident misclassification, or a confident hit of the target."""

    def __init__(self, loss: AttackLoss, confidence: float) -> None:
        self.base = loss
        self.confidence = float(confidence)
        self.target_rules = loss.target_rules

    def __call__(self, logits, y, target):
        return self.base(logits, y, target)

    def success(self, logits, y, target):
        return self.base.success(logits, y, target) & (logits.softmax(dim=1).amax(dim=1) >= self.confidence)

    def check_labels(self, y, num_outputs):
        return self.base.check_labels(y, num_outputs)

    def check_targets(self, target, y, num_outputs):
        return self.base.check_targets(target, y, num_outputs)

    def pick_targets(self, rule, y, clean_logits, uniform):
        return self.base.pick_targets(rule, y, clean_logits, uniform)

    def __repr__(self) -> str:
        return f"Confident({self.base!r}, {self.confidence})"
