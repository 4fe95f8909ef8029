"""Losses for multi-label classifiers: one logit per label, a sigmoid each.

- :func:`multilabel_bce`: binary cross-entropy summed over labels.
- :func:`asymmetric_loss`: the asymmetric loss (ASL) of Ridnik et al. 2021, "Asymmetric Loss For
  Multi-Label Classification" (ICCV). With ``p = sigmoid(z)`` for each label, the paper's loss is

      L+ = (1 - p)^gamma_pos * log(p)                     for a positive label,
      L- = p_m^gamma_neg * log(1 - p_m),  p_m = max(p - m, 0)   for a negative label,
      L  = -sum over labels of (y * L+ + (1 - y) * L-).

  The focusing terms (``gamma``) down-weight easy samples, more strongly for the many negatives than
  for the few positives; the probability shifting (margin ``m``, ``clip`` here) discards negatives whose
  probability is already below ``m`` and lowers the weight of the rest. With both gammas and the clip
  at 0 the loss is binary cross-entropy.

Both return one value per sample with ``reduction="none"``, else their mean (``"mean"``) or sum (``"sum"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("mean", "sum", "none")


def _check(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> None:
    if logits.ndim != 2 or logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} must both be N x L")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; choose one of {REDUCTIONS}")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


def _focus(base: torch.Tensor, gamma: float) -> torch.Tensor:
    """``base ** gamma`` for ``base`` in [0, 1], with a finite gradient also at ``base == 0`` for ``gamma < 1``."""
    if gamma == 0:
        return torch.ones_like(base)
    present = base > 0
    return torch.where(present, torch.where(present, base, torch.ones_like(base)).pow(gamma), torch.zeros_like(base))


def check_asymmetric(gamma_neg: float, gamma_pos: float, clip: float) -> None:
    """Raise :class:`ValueError` unless both gammas are >= 0 and ``clip`` is in [0, 1)."""
    if gamma_neg < 0 or gamma_pos < 0:
        raise ValueError(f"gammas must be >= 0, got gamma_neg={gamma_neg}, gamma_pos={gamma_pos}")
    if not 0 <= clip < 1:
        raise ValueError(f"clip must be in [0, 1), got {clip}")


def multilabel_bce(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of each label's sigmoid, summed over labels per sample."""
    _check(logits, targets, reduction)
    per_label = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    return _reduce(per_label.sum(1), reduction)


def asymmetric_loss(logits: torch.Tensor, targets: torch.Tensor, gamma_neg: float = 4.0, gamma_pos: float = 1.0,
                    clip: float = 0.05, reduction: str = "mean") -> torch.Tensor:
    """The asymmetric loss of Ridnik et al. 2021 (eq. 6 with eq. 4), summed over labels per sample.

    ``targets`` are 0/1 per label (float or bool). ``gamma_neg`` and ``gamma_pos`` are the focusing
    exponents of negatives and positives, ``clip`` the probability margin ``m`` of the negatives; the
    paper's defaults are 4, 1 and 0.05. Logs are computed from the logits (log-sigmoid), so the loss stays
    finite for any finite logit; the focusing weights are part of the gradient, as in the paper.
    """
    _check(logits, targets, reduction)
    check_asymmetric(gamma_neg, gamma_pos, clip)
    y = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    log_p = F.logsigmoid(logits)
    positive = _focus(torch.sigmoid(-logits), gamma_pos) * log_p  # sigmoid(-z) = 1 - p
    if clip > 0:
        p_m = (p - clip).clamp_min(0)
        log_not_p_m = torch.log1p(-p_m)  # 1 - p_m >= clip > 0: finite
    else:
        p_m, log_not_p_m = p, F.logsigmoid(-logits)
    negative = _focus(p_m, gamma_neg) * log_not_p_m
    per_label = -(y * positive + (1 - y) * negative)
    return _reduce(per_label.sum(1), reduction)


__all__ = ["REDUCTIONS", "asymmetric_loss", "check_asymmetric", "multilabel_bce"]
