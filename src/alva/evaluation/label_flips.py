"""What an attack on one label of a multi-label model did: the target flipped, and what else changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from alva.attacks.base import Attack
from alva.attacks.multilabel import predicted_labels
from alva.evaluation.accuracy import predict_logits


def label_flip_report(clean_logits: torch.Tensor, adv_logits: torch.Tensor, target: torch.Tensor
                      ) -> dict[str, Any]:
    """Per-attack figures against the clean predictions.

    success: the chosen label flipped. collateral: mean number of other labels that changed.
    hamming: mean number of labels that changed in all. only_target: the target flipped and nothing
    else changed. positives_turned_off: fraction of the labels on before that are off after (naive PGD on the
    summed binary cross-entropy mostly turns labels off).
    """
    clean, adv = predicted_labels(clean_logits), predicted_labels(adv_logits)
    changed = clean != adv
    target_changed = changed.gather(1, target[:, None]).squeeze(1)
    collateral = changed.sum(1) - target_changed.int()
    positives = clean.sum().clamp_min(1)
    return {
        "n": len(target),
        "success": target_changed.float().mean().item(),
        "collateral": collateral.float().mean().item(),
        "hamming": changed.sum(1).float().mean().item(),
        "only_target": (target_changed & (collateral == 0)).float().mean().item(),
        "positives_turned_off": ((clean == 1) & (adv == 0)).sum().item() / positives.item(),
    }


def attack_one_label(attack: Attack, x: torch.Tensor, target: torch.Tensor | None = None, *,
                     batch_size: int = 250) -> dict[str, Any]:
    """Attack label ``target[i]`` of each image (``None``: the attack's target rule picks it), holding the
    model's clean predictions; return :func:`label_flip_report`'s figures."""
    clean_parts: list[torch.Tensor] = []
    adv_parts: list[torch.Tensor] = []
    target_parts: list[torch.Tensor] = []
    held_all = predicted_labels(predict_logits(attack.model, x, batch_size))
    for i in range(0, len(x), batch_size):
        rows = slice(i, i + batch_size)
        result = attack(x[rows], held_all[rows], target=None if target is None else target[rows])
        if result.target is None:
            raise ValueError("attack_one_label needs a label to attack: give target, or an attack with a target rule")
        clean_parts.append(result.clean_logits)
        adv_parts.append(result.adv_logits)
        target_parts.append(result.target)
    return label_flip_report(torch.cat(clean_parts), torch.cat(adv_parts), torch.cat(target_parts))


def flip_curves(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                attacks: Sequence[str] = ("naive PGD", "single-label")) -> dict[str, list[dict[str, float]]]:
    """The rows of :func:`attack_one_label` (with ``attack`` and ``eps``) as one curve per attack and column:
    ``{"attack: column": [{"eps": ..., "rate": ...}, ...]}``, ready for :func:`alva.report.eps_curve_plot`."""
    return {f"{name}: {column.replace('_', ' ')}": [{"eps": r["eps"], "rate": r[column]} for r in rows
                                                    if r["attack"] == name]
            for name in attacks for column in columns}
