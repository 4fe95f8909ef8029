"""The result of a strong evaluation: the worst case per sample, the table of robust accuracy after each
attack, and the ``result.json`` that ``alva eval`` writes and ``alva report`` renders (kind ``"strong-eval"``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alva import distributed
from alva.evaluation.robustness import RobustnessReport
from alva.tracking import atomic_write_json

__all__ = ["CLEAN_WRONG", "MEMBERS", "RESULT_FILE", "ROBUST", "StrongResult", "broken_by_names", "table_from_codes",
           "write_result"]

MEMBERS = ("apgd-ce", "apgd-t", "apgd-dlr", "square", "fab-t", "fab", "hsj")
"""Attacks the ensemble can run: APGD with cross-entropy, APGD-T (targeted DLR), APGD with untargeted DLR, Square,
FAB-T (targeted FAB), untargeted FAB and HopSkipJump (decision-based: the labels only)."""
ROBUST, CLEAN_WRONG = -1, 0  # codes per sample besides 1 + MEMBERS.index(attack that broke it)
RESULT_FILE = "result.json"


def broken_by_names(codes: torch.Tensor) -> list[str | None]:
    """Per sample, the attack that broke it, ``"clean"`` if misclassified to begin with, or None."""
    names = {ROBUST: None, CLEAN_WRONG: "clean", **{1 + i: m for i, m in enumerate(MEMBERS)}}
    return [names[int(c)] for c in codes]


def table_from_codes(codes: torch.Tensor, attacks: Sequence[str], seconds: Sequence[float]) -> list[dict[str, Any]]:
    """The table of a run from its per-sample codes: a row for the clean inputs, then one per attack in order.

    Each attack ran on the points still robust before it, so what it attacked and broke, and the robust
    accuracy after it, follow from the codes alone; ``seconds`` gives the time of the clean pass and of each
    attack, in that order.
    """
    correct = codes != CLEAN_WRONG
    rows = [{"attack": "clean", "robust_acc": correct.float().mean().item(), "attacked": len(codes),
             "broken": int((~correct).sum()), "seconds": round(float(seconds[0]), 3)}]
    still = correct.clone()
    for name, spent in zip(attacks, seconds[1:], strict=True):
        attacked = int(still.sum())
        broke = codes == 1 + MEMBERS.index(name)
        still &= ~broke
        rows.append({"attack": name, "robust_acc": still.float().mean().item(), "attacked": attacked,
                     "broken": int(broke.sum()), "seconds": round(float(spent), 3)})
    return rows


@dataclass
class StrongResult:
    """The worst case per sample over the ensemble.

    x_adv: the adversarial example that broke each sample (the clean image where none did or the clean
        prediction was already wrong); for a streamed set only those of the first samples (see
        :meth:`~alva.evaluation.strong.StrongEvaluation.run`), the other per-sample fields cover every sample.
    broken_by: per sample, the attack that broke it, ``"clean"`` if misclassified to begin with, or None.
    table: rows ``{attack, robust_acc, seconds, attacked, broken}``, the first for the clean inputs; robust_acc
        is cumulative (after that attack), ``attacked`` the points it ran on, ``broken`` those it broke.
    report: the usual :class:`~alva.evaluation.RobustnessReport` of the ensemble as one attack.
    warnings: what the sanity checks found.
    """

    x_adv: torch.Tensor
    y: torch.Tensor
    adv_logits: torch.Tensor
    clean_logits: torch.Tensor
    broken_by: list[str | None]
    queries: torch.Tensor
    steps: torch.Tensor
    table: list[dict[str, Any]]
    settings: dict[str, Any]
    report: RobustnessReport
    warnings: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def clean_acc(self) -> float:
        return self.table[0]["robust_acc"]

    @property
    def robust_acc(self) -> float:
        return self.table[-1]["robust_acc"]

    @property
    def robust(self) -> torch.Tensor:
        """Per sample: clean-correct and broken by no attack."""
        return torch.tensor([b is None for b in self.broken_by], dtype=torch.bool)

    def format_table(self) -> str:
        lines = [f"{'attack':10s} {'robust acc':>10s} {'attacked':>9s} {'broken':>7s} {'seconds':>8s}"]
        for row in self.table:
            lines.append(f"{row['attack']:10s} {row['robust_acc']:10.4f} {row['attacked']:9d} {row['broken']:7d} "
                         f"{row['seconds']:8.1f}")
        total = sum(row["seconds"] for row in self.table)
        lines.append(f"{'total':10s} {self.robust_acc:10.4f} {'':9s} {'':7s} {total:8.1f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for b in self.broken_by:
            counts[b or "robust"] = counts.get(b or "robust", 0) + 1
        return {"settings": self.settings, "n": self.n, "clean_acc": self.clean_acc, "robust_acc": self.robust_acc,
                "table": self.table, "broken_by_counts": counts, "warnings": self.warnings,
                "report": self.report.to_dict(), "broken_by": self.broken_by}


def write_result(result: StrongResult, folder: str | Path, *, model: str | None = None,
                 arguments: Mapping[str, Any] | None = None) -> Path:
    """Write ``result.json`` (kind ``"strong-eval"``) to ``folder``, the file ``alva report`` renders.

    Under ``torchrun`` only the main process writes (every process holds the same merged result).

    Args:
        result: The result of the evaluation.
        folder: The output folder (created if missing).
        model: What the model is called in the report (a zoo name, a file, a run folder).
        arguments: The settings to record beside the result (a command's arguments).

    Returns:
        The path of the file written.
    """
    path = Path(folder) / RESULT_FILE
    if not distributed.is_main():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {**({"model": model} if model is not None else {}),
                               **({"arguments": dict(arguments)} if arguments is not None else {}), **result.to_dict()}
    atomic_write_json(path, summary, kind="strong-eval")
    return path
