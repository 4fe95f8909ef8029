"""The one attack interface: build with a model and settings, call on ``(x, y)``, get an
:class:`AttackResult`.

Inputs are images in ``bounds`` (default [0, 1]); normalisation belongs in the model
(:class:`alva.models.Normalized`). During an attack the model is in eval mode and its weights
compute no gradient; both are restored afterwards, also when the attack raises.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from alva.attacks.errors import AttackInputError, ModelFailedError, check_label_range, checked_logits, positive_int
from alva.attacks.keyed import KeyedRandom, Uniform
from alva.attacks.losses import AttackLoss, Objective, as_attack_loss
from alva.models.loading import model_io

__all__ = ["UNBOUNDED", "Attack", "AttackInputError", "AttackResult", "LatentResult", "ModelFailedError", "attack_mode",
           "check_batch", "check_images_fit", "check_label_range", "positive_int"]

UNBOUNDED = (float("-inf"), float("inf"))
"""The bounds of an attack on an unbounded space (a generator's latent vectors)."""


@dataclass
class AttackResult:
    """What an attack returns.

    x_adv: the adversarial batch, same shape as the input.
    success: per-sample bool: misclassified (untargeted) or classified as ``target`` (targeted).
    steps: per-sample number of gradient steps (or iterations) spent.
    queries: per-sample number of model forward passes spent.
    adv_logits: the model's logits at ``x_adv``; clean_logits: at the clean input.
    target: the target labels of a targeted attack, else None.
    """

    x_adv: torch.Tensor
    success: torch.Tensor
    steps: torch.Tensor
    queries: torch.Tensor
    adv_logits: torch.Tensor
    clean_logits: torch.Tensor
    target: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.success.float().mean().item()

    @property
    def adv_pred(self) -> torch.Tensor:
        return self.adv_logits.argmax(dim=1)

    def __len__(self) -> int:
        return len(self.x_adv)


@dataclass
class LatentResult(AttackResult):
    """An :class:`AttackResult` of an attack that makes images from latent vectors (a generator's input).

    z: the latent vectors; y: the class of each sample; x: the images before the attack (None where the
    attack has none); valid: an independent oracle still labels ``x_adv`` as ``y`` (None without an oracle);
    oracle_pred: the oracle's label of ``x_adv``.
    """

    z: torch.Tensor | None = None
    y: torch.Tensor | None = None
    x: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    oracle_pred: torch.Tensor | None = None

    @property
    def valid_adversarial(self) -> torch.Tensor:
        """Fooled the classifier and still of class y for the oracle."""
        if self.valid is None:
            raise ValueError("validity needs an oracle: build the attack with oracle=")
        return self.success & self.valid


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen weights for the duration; each module's mode and each flag restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training
        for p, flag in flags:
            p.requires_grad_(flag)


def refuse_true_targets(target: torch.Tensor, y: torch.Tensor) -> None:
    """Raise :class:`AttackInputError` when a class target equals the sample's label: success would mean
    nothing (the model need only keep its answer)."""
    if target.shape == y.shape and y.ndim == 1:
        same = target == y
        if same.any():
            raise AttackInputError(f"target equals the true label y for {int(same.sum())} of {len(y)} samples; a "
                                   "targeted attack needs another class (leave target out for an untargeted one)")


def check_batch(x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float]) -> None:
    """Raise :class:`AttackInputError` with a clear message for a batch that cannot be attacked."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise AttackInputError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    if not x.is_floating_point():
        raise AttackInputError(f"x must be a floating-point tensor of images, got dtype {x.dtype}")
    if x.ndim < 2:
        raise AttackInputError(f"x must be a batch (N x ...), got shape {tuple(x.shape)}")
    if len(x) == 0:
        raise AttackInputError("x is an empty batch")
    if y.ndim == 0:
        raise AttackInputError("y must be a batch of labels, got a scalar")
    if len(y) != len(x):
        raise AttackInputError(f"batch sizes differ: x has {len(x)} samples, y has {len(y)}")
    if y.device != x.device:
        raise AttackInputError(f"x is on {x.device} but y is on {y.device}")
    # One pass: the minimum and maximum are NaN where any value is, infinite where any value is.
    x_min, x_max = (float(v) for v in torch.aminmax(x.detach()))
    if not (math.isfinite(x_min) and math.isfinite(x_max)):
        raise AttackInputError("x contains NaN or infinite values")
    lo, hi = bounds
    if x_min < lo or x_max > hi:
        raise AttackInputError(
            f"x has values in [{x_min:.4g}, {x_max:.4g}], outside the bounds [{lo}, {hi}]: attacks take raw "
            "images; put normalisation inside the model with alva.models.Normalized"
        )


def check_images_fit(model: nn.Module, x: torch.Tensor) -> None:
    """Raise :class:`AttackInputError` for images ``model`` does not take: another shape than its card's
    ``in_shape``, or another floating-point type than its weights."""
    expected = model_io(model).in_shape
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise AttackInputError(f"x holds images of shape {tuple(x.shape[1:])} but the model takes "
                               f"{'x'.join(map(str, expected))} images (a batch N x {' x '.join(map(str, expected))})")
    weight = next((p for p in model.parameters() if p.is_floating_point()), None)
    if weight is not None and weight.dtype != x.dtype:
        raise AttackInputError(f"x is {x.dtype} but the model's weights are {weight.dtype}; convert the images "
                               f"with x.to({weight.dtype})")


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(bounds[0]), float(bounds[1])
    if not lo < hi:
        raise AttackInputError(f"bounds must satisfy low < high, got {bounds}")
    return lo, hi


def input_shape(model: nn.Module, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    """``shape``, else the image shape ``(C, H, W)`` that ``model``'s card says it takes."""
    if shape is not None:
        return tuple(int(d) for d in shape)
    known = model_io(model).in_shape
    if known is None:
        raise AttackInputError("give the image shape (C, H, W): the model has no card that says what images it takes")
    return known


class Attack:
    """Base class: validation, eval mode, targets and seeding; subclasses implement :meth:`run`, most of them
    through the engine (:class:`~alva.attacks.engine.GradientAttack`, :class:`~alva.attacks.engine.SearchAttack`),
    which owns the loop's bookkeeping.

    Args:
        model: a classifier returning logits for images in ``bounds``.
        loss: what the attack maximises and what counts as success: ``"ce"``, ``"margin"`` (class labels),
            a function ``(logits, labels, targeted) -> per-sample loss``, or an
            :class:`~alva.attacks.losses.AttackLoss` for other outputs (multi-label models).
        target: ``None`` for an untargeted attack, or a rule that chooses targets (for class labels
            ``"random"``, ``"least-likely"``); a tensor passed to ``__call__`` overrides it.
        early_stop: stop working on each sample as soon as it succeeds.
        bounds: the valid pixel range.
        seed: seeds the attack's own generator (random starts, random targets) so that a call repeats
            exactly; ``None`` draws from torch's global generator.
    """

    target_may_equal_label = False
    """Whether a target may be the sample's own label (generation from blank images, whose labels are their
    targets); elsewhere such a target is refused, as its success would mean nothing."""

    def __init__(self, model: nn.Module, *, loss: str | Objective | AttackLoss = "ce", target: str | None = None,
                 early_stop: bool = False, bounds: tuple[float, float] = (0.0, 1.0), seed: int | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise AttackInputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.loss = as_attack_loss(loss)
        if target is not None and target not in self.loss.target_rules:
            raise AttackInputError(f"unknown target rule {target!r}; choose one of {self.loss.target_rules}")
        self.model = model
        self.target_rule = target
        self.early_stop = bool(early_stop)
        self.bounds = check_bounds(bounds)
        self.seed = seed

    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> AttackResult:
        """Attack the batch ``(x, y)``; ``target`` (labels) makes the attack targeted for this call."""
        check_batch(x, y, self.bounds)
        y = self.loss.check_labels(y, None)
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=x.device).manual_seed(self.seed)
        with contextlib.ExitStack() as modes:
            for model in self.models_in_use():
                modes.enter_context(attack_mode(model))
            clean_logits = self.clean_logits(x, y)
            y = self.loss.check_labels(y, clean_logits.shape[1])
            if target is not None:
                target = self.loss.check_targets(target, y, clean_logits.shape[1])
                if not self.target_may_equal_label:
                    refuse_true_targets(target, y)
            elif self.target_rule is not None:
                target = self.loss.pick_targets(self.target_rule, y, clean_logits, self.target_numbers(x, y))
            result = self.run(x.detach(), y, target, clean_logits, generator)
        checked_logits(result.adv_logits, len(x), "the model, at the adversarial points,")
        return result

    def clean_logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The outputs at the clean batch, checked: one finite row of logits per sample (images the model cannot
        take are an :class:`AttackInputError`, not a torch error from inside the model)."""
        images = type(self).predict is Attack.predict  # an attack on another space maps x into images itself
        if images:
            check_images_fit(self.model, x)
        try:
            logits = self.clean_pass(x, y)
        except (RuntimeError, IndexError) as err:
            shape = f"x of shape {tuple(x.shape)}" if images else f"inputs of shape {tuple(x.shape)}"
            raise ModelFailedError(f"the model fails on {shape}: {type(err).__name__}: "
                                   f"{' '.join(str(err).split())[:300]}") from err
        return checked_logits(logits, len(x))

    def clean_pass(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The model's forward pass at the clean batch (default: without autograd). An attack whose first gradient
        is taken at the clean points may keep the pass's graph for it, so that the two share one forward pass."""
        with torch.no_grad():
            return self.predict(x, y)

    def target_numbers(self, x: torch.Tensor, y: torch.Tensor) -> Uniform:
        """Keyed numbers for a random target rule, from a generator of their own: the run's generator, and so
        every random number of the search, is the same with and without random targets."""
        generator = None if self.seed is None else torch.Generator(device=x.device).manual_seed(self.seed)
        return KeyedRandom(x, generator, y).stream(torch.arange(len(x), device=x.device), (-1,))

    def run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, clean_logits: torch.Tensor,
            generator: torch.Generator | None) -> AttackResult:
        """The attack proper, on a checked batch with the models in attack mode (see :mod:`alva.attacks.engine`
        for the loops that do the bookkeeping)."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The outputs under attack at the points ``x`` (of samples labelled ``y``): ``model(x)``; an attack
        on another space (a generator's latent space) composes the model with the map into images."""
        return self.model(x)

    def models_in_use(self) -> tuple[nn.Module, ...]:
        """The modules held in eval mode with frozen weights during a call."""
        return (self.model,)

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not isinstance(v, nn.Module))
        return f"{type(self).__name__}({settings})"
