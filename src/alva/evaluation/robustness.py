"""Robustness of a classifier under an attack: accuracy, success, confidence and perturbation size,
overall and per class; and accuracy against eps (the "effect of eps" figure of Goodfellow et al. 2015). A
minimum-norm attack gives that curve from one run (:mod:`alva.evaluation.minimum_norm`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from tqdm.auto import tqdm

from alva import distributed
from alva.attacks.base import Attack, AttackResult
from alva.attacks.minimum_norm import MinimumNormResult
from alva.attacks.sparse import pixel_l0
from alva.evaluation.inputs import Samples, held_in_memory, local_batches, sharded
from alva.evaluation.minimum_norm import minimum_norm_name, minimum_norm_summary
from alva.results import Batch

CHANGED = 1e-6
"""A pixel counts in L0 when some channel moved by more than this."""


@dataclass
class RobustnessReport:
    """Figures of one attack on one set. Rates are fractions in [0, 1].

    clean_acc / robust_acc: accuracy on clean inputs / on adversarial inputs of samples also clean-correct.
    adv_error: error on the adversarial inputs of all samples (the FGSM paper's figure).
    success_rate: fraction of clean-correct samples on which the attack succeeded.
    confidence_misclassified: mean top softmax probability on misclassified adversarial inputs.
    norms: mean L-inf, L2 and L0 of the perturbations; L0 counts pixels (positions), a pixel of an
        ``N x C x H x W`` batch counting once when any of its channels changed.
    minimum_norm: for a minimum-norm attack, the figures of its smallest perturbations
        (:func:`~alva.evaluation.minimum_norm.minimum_norm_summary`: norm, success rate, median and mean
        distance, robust accuracy at each eps); None for other attacks. ``robust_acc`` is then the robust
        accuracy at any eps (the samples the attack did not break).
    """

    attack: str
    n: int
    clean_acc: float
    robust_acc: float
    adv_error: float
    success_rate: float
    confidence_misclassified: float
    norms: dict[str, float]
    mean_steps: float
    mean_queries: float
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)
    minimum_norm: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SampleFigures:
    """Per-sample figures of an attacked set, all a :class:`RobustnessReport` is made from (no images).

    ``linf``, ``l2`` and ``l0`` are the sizes of each perturbation (L0 in pixels, see :data:`CHANGED`);
    ``confidence`` the top softmax probability at the adversarial input. A minimum-norm attack's figures are a
    :class:`MinimumNormFigures`.
    """

    y: torch.Tensor
    clean_ok: torch.Tensor
    adv_ok: torch.Tensor
    success: torch.Tensor
    confidence: torch.Tensor
    linf: torch.Tensor
    l2: torch.Tensor
    l0: torch.Tensor
    steps: torch.Tensor
    queries: torch.Tensor

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor, result: AttackResult) -> SampleFigures:
        """The figures of an attacked set (all tensors on the CPU)."""
        adv = result.x_adv.detach().cpu()
        delta = (adv - x).reshape(len(x), -1)
        figures = dict(y=y, clean_ok=result.clean_logits.argmax(1) == y, adv_ok=result.adv_pred == y,
                   success=result.success, confidence=result.adv_logits.softmax(1).amax(1), linf=delta.abs().amax(1),
                   l2=delta.norm(dim=1), l0=pixel_l0(adv - x, 0.0, CHANGED), steps=result.steps,
                   queries=result.queries)
        if isinstance(result, MinimumNormResult):
            return MinimumNormFigures(**figures, distance=result.distances.detach().cpu().float())
        return SampleFigures(**figures)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def cat(cls, parts: Sequence[SampleFigures]) -> SampleFigures:
        """The figures of several parts, one after the other."""
        return cls(**{f.name: torch.cat([getattr(p, f.name).detach().cpu() for p in parts]) for f in fields(cls)})


@dataclass
class MinimumNormFigures(SampleFigures):
    """The figures of a minimum-norm attack: also each sample's ``distance``, the norm of its smallest adversarial
    perturbation found (0 where the clean input is already wrong, inf where the attack failed)."""

    distance: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def _rates(clean_ok: torch.Tensor, adv_ok: torch.Tensor, success: torch.Tensor) -> dict[str, float]:
    n = max(len(clean_ok), 1)
    correct = clean_ok.sum().item()
    return {
        "n": len(clean_ok),
        "clean_acc": correct / n,
        "robust_acc": (clean_ok & adv_ok).sum().item() / n,
        "adv_error": 1 - adv_ok.float().mean().item() if len(adv_ok) else 0.0,
        "success_rate": success[clean_ok].float().mean().item() if correct else 0.0,
    }


def report_from(attack_name: str, figures: SampleFigures, *, norm: str | None = None,
                eps_values: Sequence[float] | None = None) -> RobustnessReport:
    """The report made from per-sample figures (of one process, or merged over several); with the ``norm`` of a
    minimum-norm attack, also its figures (robust accuracy at each of ``eps_values``, see
    :func:`~alva.evaluation.minimum_norm.minimum_norm_summary`)."""
    f = figures
    per_class = {}
    for c in torch.unique(f.y).tolist():
        mask = f.y == c
        per_class[int(c)] = _rates(f.clean_ok[mask], f.adv_ok[mask], f.success[mask])
    overall = _rates(f.clean_ok, f.adv_ok, f.success)
    wrong = ~f.adv_ok
    return RobustnessReport(
        attack=attack_name,
        n=len(f.clean_ok),
        clean_acc=overall["clean_acc"],
        robust_acc=overall["robust_acc"],
        adv_error=overall["adv_error"],
        success_rate=overall["success_rate"],
        confidence_misclassified=f.confidence[wrong].mean().item() if wrong.any() else float("nan"),
        norms={"linf": f.linf.mean().item(), "l2": f.l2.mean().item(), "l0": f.l0.float().mean().item()},
        mean_steps=f.steps.float().mean().item(),
        mean_queries=f.queries.float().mean().item(),
        per_class=per_class,
        minimum_norm=minimum_norm_summary(f.distance, f.clean_ok, norm, eps_values)
        if norm is not None and isinstance(f, MinimumNormFigures) else None,
    )


def summarize(attack_name: str, x: torch.Tensor, y: torch.Tensor, result: AttackResult) -> RobustnessReport:
    """The report for one attacked set (all tensors on the CPU)."""
    return report_from(attack_name, SampleFigures.of(x, y, result))


def run_attack(attack: Attack, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
               device: str | torch.device = "cpu", progress: bool = True, desc: str = "attack") -> AttackResult:
    """Run ``attack`` over ``(x, y)`` in batches and concatenate the results on the CPU."""
    parts: list[AttackResult] = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        r = attack(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device))
        parts.append(r)
    cat = lambda name: torch.cat([getattr(p, name).detach().cpu() for p in parts])  # noqa: E731
    target = cat("target") if parts[0].target is not None else None
    fields_ = (cat("x_adv"), cat("success"), cat("steps"), cat("queries"), cat("adv_logits"), cat("clean_logits"),
               target)
    if isinstance(parts[0], MinimumNormResult):
        return MinimumNormResult(*fields_, norm=parts[0].norm, distances=cat("distances"))
    return AttackResult(*fields_)


def _on_cpu(r: AttackResult) -> AttackResult:
    fields_ = (r.x_adv.detach().cpu(), r.success.cpu(), r.steps.cpu(), r.queries.cpu(), r.adv_logits.detach().cpu(),
               r.clean_logits.detach().cpu())
    if isinstance(r, MinimumNormResult):
        return MinimumNormResult(*fields_, norm=r.norm, distances=r.distances.detach().cpu())
    return AttackResult(*fields_)


def _batch_fields(batch: Batch) -> dict[str, torch.Tensor]:
    return {f.name: getattr(batch, f.name) for f in fields(batch)}


def attack_figures(attack: Attack, x: Samples, y: torch.Tensor | None = None, *, name: str | None = None,
                   batch_size: int = 500, device: str | torch.device = "cpu", progress: bool = True,
                   keep: int | None = None, num_workers: int = 0) -> tuple[SampleFigures, Batch]:
    """Attack a set and return the per-sample figures and the attacked images kept for figures.

    Images and labels in memory (tensors, or an in-memory ``ImageData``, in one process) are attacked in
    batches and every adversarial image is kept. A streamed set (a streamed ``ImageData``, a ``DataLoader`` or
    any iterable of ``(images, labels)`` batches) is read a batch at a time: only the per-sample figures of
    every image and the first ``keep`` attacked images (default: one batch) stay in memory. Under
    ``torchrun`` each process attacks its share (:func:`alva.evaluation.inputs.local_batches`) and the
    figures and kept images are merged in the order of the set, so every process returns what one would.

    Args:
        attack: The attack to run.
        x: The images (with ``y``), an ``ImageData`` or an iterable of batches.
        y: The labels of an image tensor ``x``.
        name: The name of the attack in progress bars (default: its class name).
        batch_size: Samples per attacked batch (an iterable keeps its own batches).
        device: Where the attack runs.
        progress: Show a progress bar.
        keep: How many attacked images (the first of the set) the returned batch holds; ``None``: all of
            them in memory, the first ``batch_size`` when streamed.
        num_workers: Worker processes reading a streamed ``ImageData``.
    """
    desc = name or type(attack).__name__
    memory = held_in_memory(x, y)
    if memory is not None and not sharded():
        images, labels = memory
        result = run_attack(attack, images, labels, batch_size=batch_size, device=device, progress=progress,
                            desc=desc)
        labels = labels.cpu()
        batch = Batch.from_logits(images, result.x_adv, labels, result.clean_logits, result.adv_logits,
                                  result.success)
        if keep is not None:
            batch = Batch(**{k: v[:keep] for k, v in _batch_fields(batch).items()})
        return SampleFigures.of(images.cpu(), labels, result), batch
    limit = keep if keep is not None else len(memory[0]) if memory is not None else batch_size
    parts, index, kept = [], [], []
    bar = tqdm(desc=desc, unit="img", disable=not progress or not distributed.is_main(), leave=False,
               dynamic_ncols=True)
    for images, labels, at in local_batches(x, y, batch_size, num_workers=num_workers):
        labels = labels.cpu().long()
        r = attack(images.to(device), labels.to(device))
        r = _on_cpu(r)
        parts.append(SampleFigures.of(images.cpu(), labels, r))
        index.append(at)
        near = at < limit
        kept.append((at[near], Batch.from_logits(images[near], r.x_adv[near], labels[near], r.clean_logits[near],
                                                 r.adv_logits[near], r.success[near])))
        bar.update(len(labels))
    bar.close()
    if not parts:
        raise ValueError("no images to attack in this process")
    kind = type(parts[0])  # SampleFigures, or MinimumNormFigures with the distances
    _, merged = distributed.gather_samples(torch.cat(index), kind.cat(parts).tensors())
    kept_fields = [_batch_fields(b) for _, b in kept]
    shown = {k: torch.cat([f[k] for f in kept_fields]) for k in kept_fields[0]}
    _, shown = distributed.gather_samples(torch.cat([i for i, _ in kept]), shown)
    return kind(**merged), Batch(**shown)


def evaluate_attack(attack: Attack, x: Samples, y: torch.Tensor | None = None, *, name: str | None = None,
                    batch_size: int = 500, device: str | torch.device = "cpu", progress: bool = True,
                    keep: int | None = None, num_workers: int = 0, eps_values: Sequence[float] | None = None
                    ) -> tuple[RobustnessReport, Batch]:
    """Attack a set and return the report and the attacked images kept (for image grids).

    ``x`` is an image tensor (with its labels ``y``), an :class:`~alva.data.ImageData` or any iterable of
    ``(images, labels)`` batches such as a ``DataLoader``. In memory every attacked image is kept; a streamed
    set holds only a few batches at a time and the batch returned holds its first ``keep`` images (default:
    one batch). Under ``torchrun`` the images are split over the processes and the report is that of the
    whole set (see :func:`attack_figures`, which takes the same arguments and returns per-sample figures).

    A minimum-norm attack (:class:`~alva.attacks.minimum_norm.MinimumNormAttack`) gives, from this one run, the
    report's ``minimum_norm`` figures: the median and mean size of its smallest perturbations and the robust
    accuracy at each of ``eps_values`` (default: 7 values from 0 to the largest distance found); other attacks
    ignore ``eps_values``.
    """
    label = name or type(attack).__name__
    figures, batch = attack_figures(attack, x, y, name=label, batch_size=batch_size, device=device,
                                    progress=progress, keep=keep, num_workers=num_workers)
    return report_from(label, figures, norm=minimum_norm_name(attack), eps_values=eps_values), batch


def eps_curve(make_attack: Callable[[float], Attack], eps_values: Sequence[float], x: Samples,
              y: torch.Tensor | None = None, *, batch_size: int = 500, device: str | torch.device = "cpu",
              progress: bool = True, num_workers: int = 0) -> list[dict[str, float]]:
    """Robust accuracy, adversarial error and confidence for each eps (``make_attack(eps)`` builds the attack).

    ``x`` is what :func:`evaluate_attack` takes; a streamed set is read once per eps.
    """
    points = []
    for eps in tqdm(list(eps_values), desc="eps curve", disable=not progress, leave=False, dynamic_ncols=True):
        report, _ = evaluate_attack(make_attack(float(eps)), x, y, batch_size=batch_size, device=device,
                                    progress=False, keep=0, num_workers=num_workers)
        points.append({"eps": float(eps), "robust_acc": report.robust_acc, "adv_error": report.adv_error,
                       "confidence_misclassified": report.confidence_misclassified})
    return points
