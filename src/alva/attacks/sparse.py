"""Sparse confident images: optimise an image until the model gives a chosen class a high probability
while few pixels are non-zero (by default: probability >= 0.9 with at most 300 non-zero pixels).

The objective, minimised over the image ``x`` inside the pixel bounds ``[lo, hi]``, is

    -objective(model(x), target) + lam * ||x - lo||_1

where ``objective`` is the attack loss (default ``"ce"``: minus the cross-entropy of the target, i.e. the
log-probability of the target class). Since ``x >= lo``, the L1 term is linear and its proximal step
together with the box constraint is a shift followed by a clamp to ``[lo, hi]``: pixels are pushed to
exactly ``lo`` (0 for images in [0, 1]), so the images become sparse in the strict sense, not merely small.
Two update rules: ``"adam"`` (Adam on the gradient of the whole objective, then the clamp; default) and
``"ista"`` (projected gradient descent with a fixed step: ISTA on the box, Beck and Teboulle 2009). The
attack is a :class:`~alva.attacks.engine.GradientAttack`: it supplies the start, this step and the success
test; the engine owns the loop, early stop, the counters and the result.

Definitions used everywhere (the early-stop rule, the reported figures and :func:`sparse_summary`):

* a *pixel* is one position of the image: for ``N x C x H x W`` batches all ``C`` channels at ``(h, w)``;
  for ``N x D`` or ``N x H x W`` batches one entry;
* a pixel is *non-zero* when some channel differs from the lower bound ``lo`` by more than ``zero_tol``
  (default 1e-3); ``L0`` is the number of non-zero pixels;
* ``L1`` is the sum of ``|x - lo|`` over all entries;
* the *target probability* is the softmax probability of the target class.

A sample succeeds when its target probability is ``>= confidence`` and its L0 is ``<= max_pixels``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from alva.attacks.base import Attack, AttackInputError, AttackResult, input_shape
from alva.attacks.engine import LAST_ITERATE, GradientAttack, Rows, Run
from alva.attacks.errors import finite, in_interval, integer_at_least, positive_int
from alva.attacks.keyed import Uniform
from alva.attacks.losses import ClassLoss

__all__ = ["SparseConfident", "SparseRows", "blank_images", "blank_starts", "class_probability", "pixel_l0", "pixel_l1",
           "pixel_mask_shape", "sparse_summary"]

STARTS = ("zeros", "uniform", "input")
OPTIMIZERS = ("adam", "ista")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def _pixels(mask: torch.Tensor) -> torch.Tensor:
    """A per-entry bool mask reduced to pixels: any channel (dim 1 of a 4-D or higher batch), flattened."""
    if mask.ndim >= 4:
        mask = mask.any(dim=1)
    return mask.reshape(len(mask), -1)


def class_probability(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The softmax probability of class ``labels`` per sample."""
    return logits.softmax(dim=1).gather(1, labels[:, None]).squeeze(1)


def pixel_l0(x: torch.Tensor, low: float = 0.0, zero_tol: float = 1e-3) -> torch.Tensor:
    """Number of pixels of each image with some channel more than ``zero_tol`` away from ``low`` (int64)."""
    return _pixels((x - low).abs() > zero_tol).sum(dim=1)


def pixel_l1(x: torch.Tensor, low: float = 0.0) -> torch.Tensor:
    """Sum of ``|x - low|`` over all entries of each image."""
    return (x - low).abs().reshape(len(x), -1).sum(dim=1)


def pixel_mask_shape(x: torch.Tensor) -> tuple[int, ...]:
    """Shape of a per-pixel mask for the batch ``x`` that broadcasts over its channels."""
    if x.ndim >= 4:
        return (len(x), 1, *x.shape[2:])
    return tuple(x.shape)


def blank_images(n: int, shape: tuple[int, ...], low: float = 0.0, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``n`` images of ``shape`` (without the batch dimension) with every entry at ``low``."""
    return torch.full((n, *shape), float(low), device=device, dtype=dtype)


def blank_starts(attack: Attack, targets: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
    """One blank image (every entry at the attack's lower bound) per class of ``targets``, of ``shape`` (default:
    the input shape on the model's card): where sparse generation starts."""
    if not isinstance(targets, torch.Tensor):
        raise AttackInputError("targets must be a tensor of class labels")
    return blank_images(len(targets), input_shape(attack.model, shape), attack.bounds[0], device=targets.device)


class SparseRows(Rows):
    """The per-row state of a sparse search: the pixels free to change and Adam's moments."""

    free: torch.Tensor | None
    m: torch.Tensor | None
    v: torch.Tensor | None


class SparseConfident(GradientAttack):
    """Generate sparse images that the model assigns to a target class with high probability.

    Call it as ``attack(x, targets)`` (the second argument is the class to generate for each image) or
    as ``attack(x, y, target=targets)`` (``y`` is then ignored apart from the checks every attack makes;
    a target rule such as ``target="random"`` picks targets relative to ``y``). ``x`` is the start image
    when ``start="input"``; for the other starts it only gives the batch's shape, device and dtype
    (:meth:`generate` builds it for you). The result's ``target`` holds the classes generated.

    Args:
        confidence: target probability a sample must reach (in [0, 1], default 0.9).
        max_pixels: most non-zero pixels a successful sample may have (default 300).
        lam: weight of the L1 penalty (>= 0, default 0.05).
        steps: largest number of update steps per sample (default 1000; budgets of 10,000 are fine).
        lr: step size (default 0.01 for ``"adam"``; for ``"ista"`` choose about 0.1 to 1).
        optimizer: ``"adam"`` or ``"ista"`` (see the module docstring).
        start: ``"zeros"`` (every pixel at the lower bound), ``"uniform"`` (uniform noise in the bounds, keyed
            per sample) or ``"input"`` (``x`` itself).
        mask_fraction: fraction of pixels (in [0, 1)) held at exactly the lower bound with no gradient,
            chosen at random for each sample (exactly ``floor(mask_fraction * pixels)`` of them); the
            result's ``extras["mask"]`` holds them (True = masked).
        zero_tol: tolerance of the L0 count (see the module docstring).
        record: keep the target probability and L0 of every sample at every step in
            ``extras["history"]`` (``(steps + 1) x N``; NaN / -1 after a sample stopped).
        early_stop: stop updating each sample at the first step where both thresholds hold (default True);
            without it every sample runs ``steps`` steps and is judged at its last iterate.

    ``loss`` (the objective that the update ascends for the target; ``"ce"``: the log-probability),
    ``target``, ``bounds`` and ``seed`` are those of every :class:`~alva.attacks.base.Attack`; the seed fixes
    the uniform start and the masks.

    Step counting: the images are checked before every update; a sample that holds both thresholds at
    the check after ``s`` updates stops there with ``steps == s``, and its image is that iterate.
    ``queries`` counts forward passes: one on ``x``, then one per check (``steps + 1`` for a sample that
    stops, ``self.steps + 1`` for one that does not). ``extras`` holds ``target_prob``, ``l0``, ``l1``
    (of the returned images), ``first_success`` (the first check at which both thresholds held, -1 if
    none: equals ``steps`` for samples stopped early), ``mask`` (or None), ``zero_tol`` and ``low``.
    """

    rule = LAST_ITERATE  # the image where a sample stopped: its first success (early stop), else the last iterate
    rows_type = SparseRows

    def __init__(self, model: torch.nn.Module, *, confidence: float = 0.9, max_pixels: int = 300, lam: float = 0.05,
                 steps: int = 1000, lr: float | None = None, optimizer: str = "adam", start: str = "zeros",
                 mask_fraction: float = 0.0, zero_tol: float = 1e-3, record: bool = False, early_stop: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(model, early_stop=early_stop, **kwargs)
        if not isinstance(self.loss, ClassLoss):
            raise AttackInputError("SparseConfident needs a classifier with class labels (loss 'ce' or 'margin')")
        self.confidence = in_interval("confidence", confidence, "[0, 1]")
        self.lam = finite("lam", lam)
        if optimizer not in OPTIMIZERS:
            raise AttackInputError(f"unknown optimizer {optimizer!r}; choose one of {OPTIMIZERS}")
        if lr is None:
            lr = 0.01 if optimizer == "adam" else 0.1
        self.lr = finite("lr", lr, strict=True)
        if start not in STARTS:
            raise AttackInputError(f"unknown start {start!r}; choose one of {STARTS}")
        self.mask_fraction = in_interval("mask_fraction", mask_fraction, "[0, 1)")
        self.zero_tol = finite("zero_tol", zero_tol)
        self.max_pixels = integer_at_least("max_pixels", max_pixels, 0)
        self.steps = positive_int("steps", steps)
        self.optimizer = optimizer
        self.start_from = start
        self.record = bool(record)

    def generate(self, targets: torch.Tensor, shape: tuple[int, ...] | None = None) -> AttackResult:
        """Generate one image of ``shape`` (default: the input shape on the model's card) for each class in
        ``targets`` (from this attack's ``start``; ``"input"`` starts from blank images)."""
        return self(blank_starts(self, targets, shape), targets)

    # -- the attack: a gradient attack on the engine ---------------------------------------------------

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        """Every sample is searched from its start (the clean point is no candidate); the classes generated
        are ``target``, else ``y``."""
        run = Run(self, x, y, y if target is None else target, clean_logits, generator, self.rule)
        run.extras["first_success"] = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
        if self.record:
            run.extras["history"] = {
                "target_prob": torch.full((self.steps + 1, len(x)), math.nan, device=x.device),
                "l0": torch.full((self.steps + 1, len(x)), -1, dtype=torch.long, device=x.device)}
        self.search(run, None, 0)
        return self.finish(run)

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        """The start image with the masked pixels at the lower bound; the mask and the uniform start are
        keyed random numbers (identical blank images of a batch get different ones)."""
        assert isinstance(rows, SparseRows)
        lo, hi = self.bounds
        x = rows.x0
        mask = self._mask(x, run.uniform(rows, (*rows.stream, 0)))
        if self.start_from == "zeros":
            start = torch.full_like(x, lo)
        elif self.start_from == "uniform":
            u = run.uniform(rows, (*rows.stream, 1))(x[0].numel()).view_as(x)
            start = lo + (hi - lo) * u.to(x.dtype)
        else:
            start = x.clone()
        if mask is not None:
            start = start.masked_fill(mask, lo)
        run.extras["mask"] = mask
        rows.free = None if mask is None else ~mask
        adam = self.optimizer == "adam"
        rows.m = torch.zeros_like(start) if adam else None
        rows.v = torch.zeros_like(start) if adam else None
        return start

    def _mask(self, x: torch.Tensor, uniform: Uniform) -> torch.Tensor | None:
        """Per-pixel bool mask (True = held at the lower bound) of exactly floor(fraction * pixels) pixels."""
        shape = pixel_mask_shape(x)
        n_pixels = math.prod(shape[1:])
        count = int(self.mask_fraction * n_pixels)
        if count == 0:
            return None
        order = uniform(n_pixels).argsort(dim=1, stable=True)
        mask = torch.zeros((len(x), n_pixels), dtype=torch.bool, device=x.device)
        mask.scatter_(1, order[:, :count], True)
        return mask.reshape(shape)

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        """One step down ``-objective + lam * L1``, clamped to the bounds; masked pixels stay at ``lo``.

        ``grad`` is the gradient of the objective (to ascend; overwritten); the L1 term's gradient is ``lam``
        on every pixel above ``lo``. Adam's moments are updated in place.
        """
        assert isinstance(rows, SparseRows)
        lo, hi = self.bounds
        g = grad.neg_().add_(self.lam)
        if rows.free is not None:
            g.mul_(rows.free)
        if rows.m is not None and rows.v is not None:
            t = k + 1
            b1, b2 = ADAM_BETAS
            rows.m.mul_(b1).add_(g, alpha=1 - b1)
            rows.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (rows.v / (1 - b2 ** t)).sqrt_().add_(ADAM_EPS)
            g = (rows.m / (1 - b1 ** t)).div_(denom)
        x = rows.x.sub_(g, alpha=self.lr).clamp_(lo, hi)
        return x if rows.free is None else x.masked_fill_(~rows.free, lo)

    def is_success(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                   ) -> torch.Tensor:
        """Both thresholds hold: the target probability and the number of non-zero pixels."""
        prob = class_probability(logits, y if target is None else target)
        return (prob >= self.confidence) & (pixel_l0(x, self.bounds[0], self.zero_tol) <= self.max_pixels)

    def checked(self, run: Run, rows: Rows, k: int, logits: torch.Tensor, success: torch.Tensor) -> None:
        """The first check where both thresholds held and, with ``record``, the history."""
        index = rows.rows if rows.rows is not None else torch.arange(rows.n, device=success.device)
        first = run.extras["first_success"]
        newly = success & (first[index] < 0)
        first[index[newly]] = k
        history = run.extras.get("history")
        if history is not None:
            target = rows.target if rows.target is not None else rows.y
            history["target_prob"][k, index] = class_probability(logits, target).float()
            history["l0"][k, index] = pixel_l0(rows.x, self.bounds[0], self.zero_tol)

    def finish(self, run: Run) -> AttackResult:
        lo = self.bounds[0]
        target = run.target
        assert target is not None  # run() always sets the classes generated
        extras = {
            "target_prob": class_probability(run.best_logits, target),
            "l0": pixel_l0(run.best_x, lo, self.zero_tol),
            "l1": pixel_l1(run.best_x, lo),
            "first_success": run.extras["first_success"],
            "mask": run.extras["mask"],
            "zero_tol": self.zero_tol,
            "low": lo,
        }
        if self.record:
            extras["history"] = run.extras["history"]
        return run.result(extras)


def _stats(columns: dict[str, torch.Tensor], rows: torch.Tensor | None) -> dict[str, float]:
    """Means of ``columns`` over ``rows`` (None: all), with the median of ``l0`` beside its mean."""
    picked = {name: (t if rows is None else t[rows]).float() for name, t in columns.items()}
    stats: dict[str, float] = {"n": len(picked["success_rate"])}
    if stats["n"] == 0:
        return stats
    for name, values in picked.items():
        stats[name] = values.mean().item()
        if name == "l0":
            stats["l0_median"] = values.median().item()
    return stats


def sparse_summary(result: AttackResult, *, zero_tol: float | None = None, low: float | None = None
                   ) -> dict[str, Any]:
    """Overall and per-class figures of a targeted generation (a :class:`SparseConfident` result, or any
    targeted result such as :class:`~alva.attacks.differential_evolution.DifferentialEvolution`'s).

    Means over samples of: success, target probability, L0 (and its median), L1, steps and queries, all
    computed from ``x_adv`` and ``adv_logits`` with the definitions of :mod:`alva.attacks.sparse`
    (``zero_tol`` and ``low`` default to the ones the attack used, else 1e-3 and 0). Returns
    ``{"overall": {...}, "per_class": {class: {...}}}``.
    """
    if result.target is None:
        raise ValueError("sparse_summary needs a targeted result (result.target is None)")
    zero_tol = result.extras.get("zero_tol", 1e-3) if zero_tol is None else zero_tol
    low = result.extras.get("low", 0.0) if low is None else low
    target = result.target.cpu()
    x_adv = result.x_adv.detach().cpu()
    columns = {"success_rate": result.success.cpu(),
               "target_prob": class_probability(result.adv_logits.detach().cpu(), target),
               "l0": pixel_l0(x_adv, low, zero_tol), "l1": pixel_l1(x_adv, low),
               "steps": result.steps.cpu(), "queries": result.queries.cpu()}
    per_class = {int(c): _stats(columns, (target == c).nonzero().squeeze(1)) for c in torch.unique(target).tolist()}
    return {"overall": _stats(columns, None), "per_class": per_class}
