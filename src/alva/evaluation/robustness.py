"""Robustness of a classifier under an attack: accuracy, success, confidence and perturbation size,
overall and per class; and accuracy against eps (the "effect of eps" figure of Goodfellow et al. 2015)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from alva.attacks.base import Attack, AttackResult
from alva.results import Batch


@dataclass
class RobustnessReport:
    """Figures of one attack on one set. Rates are fractions in [0, 1].

    clean_acc / robust_acc: accuracy on clean inputs / on adversarial inputs of samples also clean-correct.
    adv_error: error on the adversarial inputs of all samples (the FGSM paper's figure).
    success_rate: fraction of clean-correct samples on which the attack succeeded.
    confidence_misclassified: mean top softmax probability on misclassified adversarial inputs.
    norms: mean L-inf, L2 and L0 (pixels changed) of the perturbations.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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


def summarize(attack_name: str, x: torch.Tensor, y: torch.Tensor, result: AttackResult) -> RobustnessReport:
    """The report for one attacked set (all tensors on the CPU)."""
    clean_ok = result.clean_logits.argmax(1) == y
    adv_ok = result.adv_pred == y
    probs = result.adv_logits.softmax(1)
    wrong = ~adv_ok
    delta = (result.x_adv - x).reshape(len(x), -1)
    per_class = {}
    for c in torch.unique(y).tolist():
        mask = y == c
        per_class[int(c)] = _rates(clean_ok[mask], adv_ok[mask], result.success[mask])
    overall = _rates(clean_ok, adv_ok, result.success)
    return RobustnessReport(
        attack=attack_name,
        n=len(clean_ok),
        clean_acc=overall["clean_acc"],
        robust_acc=overall["robust_acc"],
        adv_error=overall["adv_error"],
        success_rate=overall["success_rate"],
        confidence_misclassified=probs.amax(1)[wrong].mean().item() if wrong.any() else float("nan"),
        norms={
            "linf": delta.abs().amax(1).mean().item(),
            "l2": delta.norm(dim=1).mean().item(),
            "l0": (delta.abs() > 1e-6).sum(1).float().mean().item(),
        },
        mean_steps=result.steps.float().mean().item(),
        mean_queries=result.queries.float().mean().item(),
        per_class=per_class,
    )


def run_attack(attack: Attack, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 500,
               device: str | torch.device = "cpu", progress: bool = True, desc: str = "attack") -> AttackResult:
    """Run ``attack`` over ``(x, y)`` in batches and concatenate the results on the CPU."""
    parts: list[AttackResult] = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        r = attack(x[i:i + batch_size].to(device), y[i:i + batch_size].to(device))
        parts.append(r)
    cat = lambda name: torch.cat([getattr(p, name).detach().cpu() for p in parts])  # noqa: E731
    target = cat("target") if parts[0].target is not None else None
    return AttackResult(cat("x_adv"), cat("success"), cat("steps"), cat("queries"), cat("adv_logits"),
                        cat("clean_logits"), target)


def evaluate_attack(attack: Attack, x: torch.Tensor, y: torch.Tensor, *, name: str | None = None,
                    batch_size: int = 500, device: str | torch.device = "cpu", progress: bool = True
                    ) -> tuple[RobustnessReport, Batch]:
    """Attack ``(x, y)`` and return the report and the attacked set (for image grids)."""
    result = run_attack(attack, x, y, batch_size=batch_size, device=device, progress=progress,
                        desc=name or type(attack).__name__)
    y = y.cpu()
    report = summarize(name or type(attack).__name__, x.cpu(), y, result)
    return report, Batch.from_logits(x, result.x_adv, y, result.clean_logits, result.adv_logits, result.success)


def eps_curve(make_attack: Callable[[float], Attack], eps_values: Sequence[float], x: torch.Tensor,
              y: torch.Tensor, *, batch_size: int = 500, device: str | torch.device = "cpu",
              progress: bool = True) -> list[dict[str, float]]:
    """Robust accuracy, adversarial error and confidence for each eps (``make_attack(eps)`` builds the attack)."""
    points = []
    for eps in tqdm(list(eps_values), desc="eps curve", disable=not progress, leave=False, dynamic_ncols=True):
        report, _ = evaluate_attack(make_attack(float(eps)), x, y, batch_size=batch_size, device=device,
                                    progress=False)
        points.append({"eps": float(eps), "robust_acc": report.robust_acc, "adv_error": report.adv_error,
                       "confidence_misclassified": report.confidence_misclassified})
    return points
