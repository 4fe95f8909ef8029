"""The strong evaluation: an ensemble of diverse attacks, by default exactly AutoAttack's standard version
(Croce and Hein 2020): APGD with the cross-entropy, APGD-T (targeted DLR against the 9 most likely other
classes), FAB-T (targeted FAB, 9 targets), then the black-box Square attack (5000 random-search steps), under
L-inf, L2 or L1. The versions ``plus`` (AutoAttack+), ``rand`` (for randomised defences) and ``quick`` are in
:mod:`alva.evaluation.strong_members`.

Each attack works only on the points that are still classified correctly; the result per sample is its
worst case: the adversarial example that broke it and the attack that did, or the clean image where none
did. Robust accuracy after each attack (cumulative) and the seconds each took go into a table.

Runs are seeded and resumable: with a state folder, the state (``state.safetensors``, mirrored for people in
``state.json``) is written atomically after every batch and every attack, and a rerun with ``resume=True``
goes on where the stopped one was and gives the same result. The attacks draw their random numbers per
sample (from the seed and the sample's pixels), so the batches a run is cut into do not change it. That is
also why a streamed set (an :class:`~alva.data.ImageData` read from disk, a ``DataLoader``), or a set shared out
over the processes of ``torchrun``, can be evaluated batch by batch (:mod:`alva.evaluation.strong_stream`) with
the same per-sample results; :func:`~alva.evaluation.strong_result.write_result` writes the ``result.json`` that
``alva report`` renders.

Sanity checks (:mod:`alva.evaluation.sanity`) run at the end by default and warn about gradient masking,
randomised models and attacks that do not work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from alva.attacks.base import Attack, AttackResult, attack_mode, check_batch
from alva.attacks.errors import checked_logits, finite
from alva.attacks.norms import get_norm
from alva.evaluation.inputs import Samples, held_in_memory, sharded
from alva.evaluation.robustness import summarize
from alva.evaluation.sanity import emit, run_sanity_checks
from alva.evaluation.strong_members import NORMS, STANDARD, VERSIONS, build_member, member_problem, with_extras
from alva.evaluation.strong_result import CLEAN_WRONG, MEMBERS, ROBUST, StrongResult, broken_by_names, write_result
from alva.evaluation.strong_stream import run_streaming
from alva.models.zoo import tensor_sha256
from alva.tracking import atomic_write_json, load_checkpoint, save_checkpoint

__all__ = ["MEMBERS", "NORMS", "STANDARD", "VERSIONS", "StrongEvaluation", "StrongResult", "strong_evaluation",
           "write_result"]

STATE_FILE, STATE_JSON = "state.safetensors", "state.json"
FORMAT = "alva-strong-eval/2"


def _model_fingerprint(model: torch.nn.Module) -> str:
    state = model.state_dict()
    return tensor_sha256(*(state[k] for k in sorted(state))) if state else "no-weights"


class StrongEvaluation:
    """The ensemble with its settings; :meth:`run` evaluates a set.

    Args:
        model: a classifier on images in ``bounds``.
        eps: radius of the threat model.
        norm: ``"linf"``, ``"l2"`` or ``"l1"``.
        version: ``"standard"`` (AutoAttack's), ``"plus"`` (AutoAttack+), ``"rand"`` (for randomised models) or
            ``"quick"``; see :data:`VERSIONS`.
        attacks: names from :data:`MEMBERS` in the order to run (default: the version's). Of the version's own
            list, an attack that cannot run here (no form for the norm, a missing module) is left out with a
            warning; one asked for by name is an error.
        extras: members added to the version's (or to ``attacks``): ``("decision",)`` adds HopSkipJump after Square,
            for models whose scores cannot be trusted (see :data:`~alva.evaluation.strong_members.EXTRAS`).
        options: per attack, settings that replace the version's (``{"square": {"n_queries": 500}}``).
        seed: seeds every attack (attack ``i`` of :data:`MEMBERS` gets ``seed + i``).
        batch_size: the samples attacked at once; it does not change the result.
        device: where the attacks run; it does not change the result.
        progress: show a progress bar.
        sanity: run the sanity checks at the end (on the first ``sanity_n`` samples).
        sanity_n: the number of samples the sanity checks use.
        warn: issue the sanity warnings as :class:`~alva.evaluation.sanity.SanityWarning` too.
        bounds: the range of the pixels.
        log: a function that gets a line per finished attack (e.g. ``print``).
    """

    def __init__(self, model: torch.nn.Module, eps: float, norm: str = "linf", *, version: str = "standard",
                 attacks: Sequence[str] | None = None, extras: Sequence[str] = (),
                 options: dict[str, dict[str, Any]] | None = None,
                 seed: int = 0, batch_size: int = 500, device: str | torch.device = "cpu", progress: bool = True,
                 sanity: bool = True, sanity_n: int = 200, warn: bool = True,
                 bounds: tuple[float, float] = (0.0, 1.0), log: Callable[[str], None] | None = None) -> None:
        eps = finite("eps", eps)
        if version not in VERSIONS:
            raise ValueError(f"unknown version {version!r}; choose one of {sorted(VERSIONS)}")
        norm = get_norm(norm).name
        if norm not in NORMS:
            raise ValueError(f"the strong evaluation runs under {', '.join(NORMS)}, not {norm!r}")
        options = options or {}
        if set(options) - set(MEMBERS):
            raise ValueError(f"options for unknown attacks {sorted(set(options) - set(MEMBERS))}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
        defaults = VERSIONS[version].options_for(norm)
        self.options = {name: {**defaults[name], **options.get(name, {})} for name in MEMBERS}
        self.left_out: dict[str, str] = {}
        if attacks is None:
            own = with_extras(VERSIONS[version].attacks, tuple(extras))
            self.left_out = {a: why for a in own if (why := member_problem(a, norm, self.options[a])) is not None}
            attacks = [a for a in own if a not in self.left_out]
        else:
            attacks = with_extras(tuple(attacks), tuple(extras))
            if not attacks:
                reasons = "; ".join(self.left_out.values())
                raise ValueError(f"no attack of the {version} version can run here: {reasons}")
        attacks = list(attacks)
        unknown = [a for a in attacks if a not in MEMBERS]
        if unknown or not attacks or len(set(attacks)) != len(attacks):
            raise ValueError(f"attacks must be distinct names from {list(MEMBERS)}, got {attacks}")
        self.model = model
        self.eps = float(eps)
        self.norm = norm
        self.version = version
        self.attacks = attacks
        self.seed = int(seed)
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.sanity = sanity
        self.sanity_n = sanity_n
        self.warn = warn
        self.bounds = bounds
        self.log = log or (lambda line: None)
        for name in attacks:
            self.member(name)  # fail early on bad options
        for name, why in self.left_out.items():
            self.log(f"[{name}] left out: {why}")

    def member(self, name: str) -> Attack:
        """The attack ``name`` exactly as the ensemble runs it (to run it alone for comparison)."""
        if name not in MEMBERS:
            raise ValueError(f"unknown attack {name!r}; choose from {list(MEMBERS)}")
        return build_member(name, self.model, self.eps, self.norm, self.options[name],
                            seed=self.seed + MEMBERS.index(name), bounds=self.bounds)

    def notes(self) -> list[str]:
        """Warnings about the ensemble itself: the attacks of the version that could not run here."""
        return [f"{self.version} version without {name}: {why}; the robust accuracy is an upper bound that "
                f"{name} might lower" for name, why in self.left_out.items()]

    def settings(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """What a resumed run must share with the stopped one."""
        return self.settings_for(len(x), tensor_sha256(x, y))

    def settings_for(self, n: int, data_sha256: str | None) -> dict[str, Any]:
        """The settings of a run on ``n`` samples whose images and labels have the SHA-256 ``data_sha256``."""
        return {"eps": self.eps, "norm": self.norm, "version": self.version, "seed": self.seed,
                "options": self.options, "bounds": list(self.bounds), "n": n,
                "data_sha256": data_sha256, "model_sha256": _model_fingerprint(self.model)}

    # -- state ----------------------------------------------------------------------------------------------

    def _fresh_state(self, x: torch.Tensor, y: torch.Tensor, settings: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        parts = []
        with attack_mode(self.model), torch.no_grad():
            for i in range(0, len(x), self.batch_size):
                batch = x[i:i + self.batch_size].to(self.device)
                parts.append(checked_logits(self.model(batch), len(batch)).detach().cpu())
        clean_logits = torch.cat(parts)
        correct = clean_logits.argmax(1) == y
        broken_by = torch.where(correct, ROBUST, CLEAN_WRONG).long()
        row = {"attack": "clean", "robust_acc": correct.float().mean().item(), "attacked": len(x),
               "broken": int((~correct).sum()), "seconds": round(time.perf_counter() - started, 3)}
        return {"format": FORMAT, "members": list(MEMBERS), "settings": settings, "done": [], "table": [row],
                "current": None,
                "x_adv": x.clone(), "adv_logits": clean_logits.clone(), "clean_logits": clean_logits,
                "broken_by": broken_by, "queries": torch.ones(len(x), dtype=torch.long),
                "steps": torch.zeros(len(x), dtype=torch.long)}

    def _check_state(self, state: dict[str, Any], settings: dict[str, Any], folder: Path) -> None:
        made = state.get("format")
        if made != FORMAT or state.get("members") != list(MEMBERS):
            if isinstance(made, str) and made.startswith(FORMAT.split("/")[0] + "/"):
                raise ValueError(f"cannot resume {folder}: its state was written by another version of the strong "
                                 f"evaluation ({made}, with the attacks {state.get('members', 'of that version')}), "
                                 f"whose results do not carry over to this one ({FORMAT}, attacks {list(MEMBERS)}); "
                                 "evaluate again in another output folder")
            raise ValueError(f"{folder / STATE_FILE} is not a strong-evaluation state ({FORMAT})")
        old = state["settings"]
        changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if changed:
            raise ValueError(f"cannot resume {folder}: the state was made with other settings ({', '.join(changed)}); "
                             "use the same model, data and settings, or another output folder")
        started = state["done"] + ([state["current"]["attack"]] if state["current"] else [])
        if self.attacks[:len(started)] != started:
            raise ValueError(f"cannot resume {folder}: it has run {started}, which is not the start of the attacks "
                             f"asked for now, {self.attacks}")

    @staticmethod
    def _save(folder: Path | None, state: dict[str, Any]) -> None:
        if folder is None:
            return
        save_checkpoint(folder / STATE_FILE, state)
        codes = state["broken_by"]
        atomic_write_json(folder / STATE_JSON, {
            "format": state["format"], "members": state["members"], "settings": state["settings"],
            "done": state["done"], "table": state["table"],
            "current": None if state["current"] is None else {
                k: v for k, v in state["current"].items() if k != "order"} | {
                "total": len(state["current"]["order"])},
            "robust": int((codes == ROBUST).sum()), "note": f"the state itself is {STATE_FILE}; this is a copy "
                                                             "for people"}, kind="strong-eval-state")

    # -- the evaluation -------------------------------------------------------------------------------------

    def run(self, x: Samples, y: torch.Tensor | None = None, *, state_dir: str | Path | None = None,
            resume: bool = False, callback: Callable[[str, dict[str, Any]], None] | None = None,
            keep: int | None = None, num_workers: int = 0) -> StrongResult:
        """Evaluate a set; with ``state_dir`` write the state there after each batch and attack.

        ``x`` is an image tensor (with its labels ``y``), an :class:`~alva.data.ImageData` or any iterable of
        ``(images, labels)`` batches such as a ``DataLoader``. Images in memory in one process are evaluated
        attack by attack over the whole set and every worst case is kept (the first ``keep`` if given). A
        streamed set, or any set under ``torchrun`` with several processes (each evaluates its share), is
        evaluated batch by batch (:mod:`alva.evaluation.strong_stream`): the per-sample results are the same,
        only a few batches of images are held at a time and ``x_adv`` holds the worst cases of the first
        ``keep`` samples (default: one batch). A state folder needs the first way.

        ``resume``: go on from the state in ``state_dir`` (a fresh start when there is none); without it an
        existing state is an error. ``callback(event, info)`` is called after each save with event
        ``"batch"`` or ``"attack"`` (an exception raised there stops the run, as an interruption would).
        ``num_workers``: worker processes reading a streamed ``ImageData``.
        """
        memory = held_in_memory(x, y)
        if memory is None or sharded():
            if state_dir is not None:
                raise ValueError("a state folder (to resume) needs the images in memory and one process; evaluate "
                                 "a streamed or sharded set without state_dir")
            return run_streaming(self, x, y, keep=keep, num_workers=num_workers, callback=callback)
        x, y = memory
        check_batch(x, y, self.bounds)
        x, y = x.detach().cpu(), y.detach().cpu().long()
        settings = self.settings(x, y)
        folder = Path(state_dir) if state_dir is not None else None
        state = None
        if folder is not None and (folder / STATE_FILE).exists():
            if not resume:
                raise ValueError(f"{folder} holds the state of an earlier evaluation: resume it (--resume) or "
                                 "choose another output folder")
            state = load_checkpoint(folder / STATE_FILE, "evaluate again from the first attack (rerun with --resume)")
            self._check_state(state, settings, folder)
        if state is None:
            state = self._fresh_state(x, y, settings)
            self._save(folder, state)
        for name in self.attacks:
            if name in state["done"]:
                continue
            self._run_attack(name, x, y, state, folder, callback)
        result = self._result(x, y, state)
        return result if keep is None else replace(result, x_adv=result.x_adv[:keep])

    def _run_attack(self, name: str, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any], folder: Path | None,
                    callback) -> None:
        codes = state["broken_by"]
        if state["current"] is None:
            state["current"] = {"attack": name, "order": (codes == ROBUST).nonzero().squeeze(1), "done_count": 0,
                                "broken": 0, "seconds": 0.0}
        current = state["current"]
        order, code = current["order"], 1 + MEMBERS.index(name)
        attack = self.member(name)
        bar = tqdm(total=len(order), initial=current["done_count"], desc=name, unit="img", disable=not self.progress,
                   leave=False, dynamic_ncols=True)
        try:
            while current["done_count"] < len(order):
                started = time.perf_counter()
                idx = order[current["done_count"]:current["done_count"] + self.batch_size]
                res = attack(x[idx].to(self.device), y[idx].to(self.device))
                broke, logits = self._verified(res, y[idx])
                at = idx[broke]
                state["x_adv"][at] = res.x_adv.detach().cpu()[broke]
                state["adv_logits"][at] = logits[broke]
                codes[at] = code
                state["queries"][idx] += res.queries.cpu()
                state["steps"][idx] += res.steps.cpu()
                current["done_count"] += len(idx)
                current["broken"] += int(broke.sum())
                current["seconds"] += time.perf_counter() - started
                self._save(folder, state)
                bar.update(len(idx))
                bar.set_postfix(robust=f"{(codes == ROBUST).float().mean().item():.4f}")
                if callback is not None:
                    callback("batch", {"attack": name, "done": current["done_count"], "total": len(order)})
        finally:
            bar.close()
        row = {"attack": name, "robust_acc": (codes == ROBUST).float().mean().item(), "attacked": len(order),
               "broken": current["broken"], "seconds": round(current["seconds"], 3)}
        state["table"].append(row)
        state["done"].append(name)
        state["current"] = None
        self._save(folder, state)
        self.log(f"[{name}] robust acc {row['robust_acc']:.4f} after breaking {row['broken']} of {row['attacked']} "
                 f"points in {row['seconds']:.1f} s")
        if callback is not None:
            callback("attack", row)

    def _verified(self, res: AttackResult, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The points the attack broke, checked by a forward pass of the ensemble's own, and those logits."""
        with attack_mode(self.model), torch.no_grad():
            logits = self.model(res.x_adv.to(self.device)).detach().cpu()
        return res.success.cpu() & (logits.argmax(1) != y), logits

    def checks(self, x: torch.Tensor, y: torch.Tensor, table: list[dict[str, Any]], n_total: int) -> list[str]:
        """The warnings of a finished run: the attacks left out, then the sanity checks on the first samples of
        ``(x, y)`` (issued as warnings too with ``warn``)."""
        messages = self.notes()
        if self.sanity:
            messages += run_sanity_checks(self.model, x[:self.sanity_n], y[:self.sanity_n], self.eps, self.norm,
                                          table=table, n_total=n_total, n=self.sanity_n, seed=self.seed,
                                          bounds=self.bounds, device=self.device, warn=False,
                                          randomised=self.version == "rand")
        if self.warn:
            emit(messages)
        return messages

    def _result(self, x: torch.Tensor, y: torch.Tensor, state: dict[str, Any]) -> StrongResult:
        codes = state["broken_by"]
        broken_by = broken_by_names(codes)
        success = (codes != ROBUST) & (codes != CLEAN_WRONG)
        summary = AttackResult(state["x_adv"], success, state["steps"], state["queries"], state["adv_logits"],
                               state["clean_logits"])
        report = summarize("strong", x, y, summary)
        messages = self.checks(x, y, state["table"], len(x))
        settings = {**state["settings"], "attacks": list(state["done"])}
        return StrongResult(state["x_adv"], y, state["adv_logits"], state["clean_logits"], broken_by, state["queries"],
                            state["steps"], [dict(r) for r in state["table"]], settings, report, messages)


def strong_evaluation(model: torch.nn.Module, x: Samples, y: torch.Tensor | None = None, eps: float | None = None,
                      norm: str = "linf", *, state_dir: str | Path | None = None, resume: bool = False,
                      callback: Callable[[str, dict[str, Any]], None] | None = None, out: str | Path | None = None,
                      keep: int | None = None, num_workers: int = 0, **kwargs) -> StrongResult:
    """Run the strong evaluation of ``model`` on a set; ``kwargs`` go to :class:`StrongEvaluation`.

    The set is what :meth:`StrongEvaluation.run` takes: ``(x, y)`` tensors, an ``ImageData`` or a loader.
    With ``out``, ``result.json`` is written there as ``alva eval`` writes it (:func:`write_result`), so
    ``alva report`` renders the run.

    >>> result = strong_evaluation(model, x, y, eps=0.3)  # doctest: +SKIP
    >>> result = strong_evaluation(model, alva.data.load("mnist"), eps=0.3, out="runs/eval")  # doctest: +SKIP
    >>> print(result.format_table())  # doctest: +SKIP
    """
    if eps is None:
        raise TypeError("strong_evaluation needs eps, the radius of the threat model")
    result = StrongEvaluation(model, eps, norm, **kwargs).run(x, y, state_dir=state_dir, resume=resume,
                                                              callback=callback, keep=keep, num_workers=num_workers)
    if out is not None:
        write_result(result, out)
    return result
