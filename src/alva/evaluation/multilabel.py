"""Multi-label metrics: mean average precision, per-label precision, recall and F1, exact match, Hamming accuracy.

Logits are per label (one sigmoid each); a label is predicted present when its probability exceeds
``threshold``. Average precision follows the ranking definition used for multi-label benchmarks
(e.g. MS-COCO in Ridnik et al. 2021): rank the samples by score and average the precision at the rank
of each positive.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _check(logits: torch.Tensor, targets: torch.Tensor) -> None:
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be N x L")
    if len(logits) == 0:
        raise ValueError("no samples")


def average_precision(scores: torch.Tensor, positives: torch.Tensor) -> float:
    """Average precision of one label: the mean, over its positive samples, of the precision among the
    samples ranked at or above it (higher score = ranked first). NaN when there is no positive.

    Tied scores count as one rank: every sample of a tie is taken at once, so the order of equal scores
    does not matter (this equals the step-wise area under the precision-recall curve).
    """
    scores = scores.detach().double().flatten()
    positives = positives.detach().flatten().bool()
    total = int(positives.sum())
    if total == 0:
        return math.nan
    order = torch.argsort(scores, descending=True, stable=True)
    ranked_scores, ranked_pos = scores[order], positives[order].double()
    true_pos = torch.cumsum(ranked_pos, 0)
    # The last position of each group of equal scores: precision is read there, once per group.
    last = torch.ones_like(ranked_scores, dtype=torch.bool)
    last[:-1] = ranked_scores[1:] != ranked_scores[:-1]
    ends = last.nonzero().squeeze(1)
    tp_at_end = true_pos[ends]
    new_pos = torch.diff(tp_at_end, prepend=tp_at_end.new_zeros(1))
    precision = tp_at_end / (ends + 1).double()
    return float((new_pos * precision).sum() / total)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with 0 where ``den`` is 0 (no predicted or no actual positives)."""
    safe = torch.where(den > 0, den, torch.ones_like(den))
    return torch.where(den > 0, num / safe, torch.zeros_like(num))


def multilabel_metrics(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of per-label ``logits`` (N x L) against multi-hot ``targets`` (N x L).

    Returns ``map`` (mean over labels with a positive of their average precision), ``ap``, ``precision``,
    ``recall`` and ``f1`` (lists over labels; 0 where undefined), ``macro_f1`` (mean of ``f1``),
    ``exact_match`` (fraction of samples whose predicted label set is exactly right) and ``hamming_acc``
    (fraction of label decisions that are right).
    """
    _check(logits, targets)
    logits, truth = logits.detach().double().cpu(), targets.detach().cpu() > 0.5
    predicted = torch.sigmoid(logits) > threshold
    ap = [average_precision(logits[:, j], truth[:, j]) for j in range(logits.shape[1])]
    defined = [a for a in ap if not math.isnan(a)]
    tp = (predicted & truth).sum(0).double()
    precision = _ratio(tp, predicted.sum(0).double())
    recall = _ratio(tp, truth.sum(0).double())
    f1 = _ratio(2 * precision * recall, precision + recall)
    return {
        "map": sum(defined) / len(defined) if defined else math.nan,
        "ap": ap,
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "macro_f1": float(f1.mean()),
        "exact_match": float((predicted == truth).all(1).double().mean()),
        "hamming_acc": float((predicted == truth).double().mean()),
    }


SUMMARY_KEYS = ("map", "exact_match", "macro_f1", "hamming_acc")


def multilabel_summary(logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> dict[str, float]:
    """The scalar part of :func:`multilabel_metrics` (what a training run logs after every epoch)."""
    metrics = multilabel_metrics(logits, targets, threshold)
    return {k: metrics[k] for k in SUMMARY_KEYS}
