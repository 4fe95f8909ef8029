"""The strong evaluation of a streamed or sharded set: batch by batch, each attack of the ensemble in turn on
the points of the batch still classified correctly, as :class:`~alva.evaluation.strong.StrongEvaluation` does on
the whole set. The attacks draw their random numbers per sample, so cutting the set into batches, or sharing it
out over the processes of ``torchrun``, leaves every per-sample result unchanged; the table follows from them.

Only per-sample results (codes, logits, counts, perturbation sizes) stay in memory for every image; images are
kept for the first samples only: those the result shows (``keep``) and those the sanity checks run on.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from alva import distributed
from alva.attacks.base import AttackResult, check_batch
from alva.evaluation.inputs import Samples, held_in_memory, local_batches, sharded
from alva.evaluation.robustness import SampleFigures, report_from
from alva.evaluation.strong_result import CLEAN_WRONG, ROBUST, StrongResult, broken_by_names, table_from_codes
from alva.models.zoo import tensor_sha256

if TYPE_CHECKING:
    from alva.evaluation.strong import StrongEvaluation

__all__ = ["run_streaming"]


def _batch_outcome(evaluation: StrongEvaluation, images: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[dict[str, torch.Tensor], list[float], torch.Tensor]:
    """Every attack on one batch: its per-sample results, the seconds of each stage and the worst cases."""
    state = evaluation._fresh_state(images, labels, {})
    for name in evaluation.attacks:
        evaluation._run_attack(name, images, labels, state, None, None)
    codes = state["broken_by"]
    success = (codes != ROBUST) & (codes != CLEAN_WRONG)
    summary = AttackResult(state["x_adv"], success, state["steps"], state["queries"], state["adv_logits"],
                           state["clean_logits"])
    results = {"codes": codes, "adv_logits": state["adv_logits"], "clean_logits": state["clean_logits"],
               **SampleFigures.of(images, labels, summary).tensors()}
    return results, [row["seconds"] for row in state["table"]], state["x_adv"]


def run_streaming(evaluation: StrongEvaluation, x: Samples, y: torch.Tensor | None, *, keep: int | None = None,
                  num_workers: int = 0, callback: Callable[[str, dict[str, Any]], None] | None = None
                  ) -> StrongResult:
    """Evaluate a set batch by batch (this process's share of it under ``torchrun``) and merge the results.

    Args:
        evaluation: The ensemble and its settings.
        x: The images (with ``y``), an ``ImageData`` or an iterable of ``(images, labels)`` batches.
        y: The labels of an image tensor ``x``.
        keep: How many worst-case images (the first of the set) the result holds; default one batch.
        num_workers: Worker processes reading a streamed ``ImageData``.
        callback: Called as ``callback("batch", {"done": images done here})`` after each batch.
    """
    quiet = copy.copy(evaluation)
    quiet.progress, quiet.log = False, lambda line: None
    memory = held_in_memory(x, y)
    digest = hashlib.sha256() if memory is None and not sharded() else None
    shown = evaluation.batch_size if keep is None else keep
    first = max(shown, evaluation.sanity_n if evaluation.sanity else 0)
    seconds = torch.zeros(1 + len(evaluation.attacks), dtype=torch.float64)
    parts: list[dict[str, torch.Tensor]] = []
    done = 0
    bar = tqdm(desc="strong", unit="img", disable=not evaluation.progress or not distributed.is_main(), leave=False,
               dynamic_ncols=True)
    for images, labels, at in local_batches(x, y, evaluation.batch_size, num_workers=num_workers):
        images, labels = images.detach().cpu(), labels.detach().cpu().long()
        check_batch(images, labels, evaluation.bounds)
        if digest is not None:
            digest.update(images.contiguous().numpy().tobytes())
        results, spent, x_adv = _batch_outcome(quiet, images, labels)
        near = at < first
        parts.append({**results, "index": at, "near": near})
        parts[-1].update(x=images[near], x_adv=x_adv[near])
        seconds += torch.tensor(spent, dtype=torch.float64)
        done += len(labels)
        bar.update(len(labels))
        if callback is not None:
            callback("batch", {"done": done})
    bar.close()
    if not parts:
        raise ValueError("no images to evaluate in this process")
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0] if k not in ("index", "near", "x", "x_adv")}
    index = torch.cat([p["index"] for p in parts])
    _, merged = distributed.gather_samples(index, cat)
    _, firsts = distributed.gather_samples(index[torch.cat([p["near"] for p in parts])],
                                           {k: torch.cat([p[k] for p in parts]) for k in ("x", "x_adv")})
    _, times = distributed.gather_samples(torch.tensor([distributed.rank()]), {"s": seconds[None]})
    labels_all = merged["y"]
    if memory is not None:
        data_sha = tensor_sha256(memory[0].detach().cpu(), memory[1].detach().cpu().long())
    elif digest is not None:
        digest.update(labels_all.contiguous().numpy().tobytes())
        data_sha = digest.hexdigest()
    else:
        data_sha = None  # a streamed set shared out over processes: no process sees it in order
    codes = merged["codes"]
    table = table_from_codes(codes, evaluation.attacks, times["s"].amax(0).tolist())
    report = report_from("strong", SampleFigures(**{f.name: merged[f.name] for f in fields(SampleFigures)}))
    messages = evaluation.checks(firsts["x"], labels_all, table, len(labels_all))
    settings = {**evaluation.settings_for(len(labels_all), data_sha), "attacks": list(evaluation.attacks)}
    return StrongResult(firsts["x_adv"][:shown], labels_all, merged["adv_logits"], merged["clean_logits"],
                        broken_by_names(codes), merged["queries"], merged["steps"], table, settings, report,
                        messages)
