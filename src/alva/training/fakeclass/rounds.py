"""The round driver of fake-class training (:func:`fakeclass_train`): generate against the network of the round,
stop or train on the real and generated images, measure, save; resumable after every round."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from alva.attacks.differential_evolution import DifferentialEvolution
from alva.attacks.sparse import SparseConfident, sparse_summary
from alva.data import load_mnist
from alva.evaluation.accuracy import accuracy, predict_logits
from alva.report.fakeclass import fakeclass_metrics_plot, round_grid
from alva.tracking.checkpoint import check_same_settings, load_checkpoint, save_checkpoint
from alva.tracking.files import atomic_write_json
from alva.tracking.logger import MetricsLogger
from alva.training.fakeclass.data import RoundData, RunData
from alva.training.fakeclass.metrics import FakeClassMetrics, nearest
from alva.training.fakeclass.network import reference_network, save_trained, start_model
from alva.training.fakeclass.settings import DE, FIT, GENERATE, PRETRAIN, FakeClassSettings, round_seed
from alva.training.loop import TrainSettings, fit

ROUNDS_KIND = "fakeclass-rounds"


def _plain(summary: dict[str, Any]) -> dict[str, Any]:
    """A :func:`sparse_summary` with string class keys (as JSON writes them)."""
    return {"overall": summary["overall"], "per_class": {str(c): v for c, v in summary["per_class"].items()}}


class Generation:
    """The two generation processes of a run, against any network: sparse confident images (the one trained
    against) and black-box differential evolution (metric 7)."""

    def __init__(self, settings: FakeClassSettings, sets: RunData, device) -> None:
        self.settings, self.sets, self.device, self.k = settings, sets, device, settings.num_classes

    def sparse(self, model: nn.Module, per_class: int, seed: int):
        a = self.settings.attack
        attack = SparseConfident(model, confidence=a.confidence, max_pixels=a.max_pixels, lam=a.lam, steps=a.steps,
                                 lr=a.lr, optimizer=a.optimizer, start=a.start, mask_fraction=a.mask_fraction,
                                 seed=seed)
        torch.manual_seed(seed)
        targets = torch.arange(self.k, device=self.device).repeat(per_class)
        return attack.generate(targets, self.sets.shape)

    def de(self, model: nn.Module, per_class: int, seed: int):
        d = self.settings.de
        if per_class == 0:
            return None
        attack = DifferentialEvolution(model, d.pixels, d.popsize, d.generations,
                                       confidence=self.settings.attack.confidence, seed=seed)
        return attack.generate(torch.arange(self.k, device=self.device).repeat(per_class), self.sets.shape)

    def reference_sets(self, reference: nn.Module) -> dict[str, Any]:
        """Sparse images (metric 6) and DE images (metric 7) generated once on the reference network."""
        s = self.settings
        sparse = self.sparse(reference, s.reference.per_class, round_seed(s.seed, -1, GENERATE))
        de = self.de(reference, s.de.per_class, round_seed(s.seed, -1, DE))
        keep_s, keep_d = sparse.success.cpu(), de.success.cpu() if de is not None else None
        return {
            "sparse": (sparse.x_adv.cpu()[keep_s], sparse.target.cpu()[keep_s]),
            "de": (de.x_adv.cpu()[keep_d], de.target.cpu()[keep_d]) if de is not None else self.sets.empty(),
            "summary": {"sparse": _plain(sparse_summary(sparse)),
                        "de": _plain(sparse_summary(de)) if de is not None else {"overall": {"n": 0}},
                        "test_acc": accuracy(reference, *self.sets.eval_test)},
        }

    def round(self, model: nn.Module, r: int, reference: nn.Module, measure: FakeClassMetrics, out: Path
              ) -> tuple[RoundData, dict[str, Any]]:
        """Round ``r``'s generation against ``model``: its data, metrics 0, 1 and 7's generation, and its grid."""
        s = self.settings
        result = self.sparse(model, s.per_class + s.test_per_class, round_seed(s.seed, r, GENERATE))
        x, t, ok = result.x_adv.cpu(), result.target.cpu(), result.success.cpu()
        n_train = s.per_class * self.k
        train_rows = torch.arange(len(x)) < n_train
        de = self.de(model, s.de.per_class, round_seed(s.seed, r, DE))
        empty = self.sets.empty()
        de_x = de.x_adv.cpu()[de.success.cpu()] if de is not None else empty[0]
        de_t = de.target.cpu()[de.success.cpu()] if de is not None else empty[1]
        data = RoundData(x[train_rows & ok], t[train_rows & ok], x[~train_rows & ok], t[~train_rows & ok], de_x, de_t)
        generation = _plain(sparse_summary(result))
        de_generation = {"n": 0, "per_class": {}}
        if de is not None:
            summary = _plain(sparse_summary(de))
            de_generation = {**summary["overall"], "per_class": summary["per_class"]}
        metrics = {
            "m00_generation": {**generation["overall"], "train_kept": len(data.x_train), "test_kept": len(data.x_test),
                               "per_class": generation["per_class"]},
            "m01_ood": measure.ood(x[ok], t[ok], reference),
            "m07_other_process": {"generation": de_generation},
        }
        round_grid(out / f"round_{r:03d}.png", r, result, de, predict_logits(reference, x).argmax(dim=1),
                   num_classes=self.k, n_train=n_train, held_out=bool(s.test_per_class),
                   most_similar=self._most_similar)
        return data, metrics

    def _most_similar(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[str]]:
        dist, near = nearest(images, self.sets.pool, cosine=True)
        return ([self.sets.pool[j] for j in near],
                [f"{int(self.sets.pool_y[j])} cos d={d:.2f}" for d, j in zip(dist, near, strict=True)])


def _resumable(state: dict[str, Any], settings: FakeClassSettings, out: Path) -> dict[str, Any]:
    """The saved run ``state`` to continue with ``settings``: they must be the same but for ``rounds``, which
    may grow (a run stopped at its round limit goes on from there: its last generation becomes a round)."""
    saved, now = state["settings"], asdict(settings)
    check_same_settings(out, saved, now, may_change=("rounds",))
    trained = sum(1 for r in state["rounds"] if not r.get("final"))
    if settings.rounds < trained:
        raise ValueError(f"cannot resume {out} with rounds={settings.rounds}: it has trained {trained} rounds")
    if settings.rounds != saved["rounds"] and state["status"] == "round limit" and settings.rounds > trained:
        state["rounds"] = state["rounds"][:-1]
        state["status"] = "running"
        state.pop("final", None)
    state["settings"]["rounds"] = settings.rounds
    return state


def _clean(out: Path) -> None:
    """Remove a previous run's files from ``out`` (the cached reference network stays)."""
    for name in ("rounds.json", "metrics.jsonl", "metrics.png", "model.safetensors", "model.json"):
        (out / name).unlink(missing_ok=True)
    for name in ("tb", "data", "weights"):
        shutil.rmtree(out / name, ignore_errors=True)
    for grid in out.glob("round_*.png"):
        grid.unlink()


def _rate(metrics: dict[str, Any], key: str) -> str:
    value = metrics[key].get("detected")
    return "n/a" if value is None else f"{value:.3f}"


def _merge(generation: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """One round's metrics, in key order: metric 7 holds both DE's generation and the detection figures."""
    metrics = {**generation, **evaluation}
    metrics["m07_other_process"] = {**generation["m07_other_process"], **evaluation["m07_other_process"]}
    return {k: metrics[k] for k in sorted(metrics)}


def _plots(out: Path, state: dict[str, Any]) -> None:
    fakeclass_metrics_plot(out / "metrics.png", state["rounds"], max_pixels=state["settings"]["attack"]["max_pixels"],
                           title=f"fake-class training ({state['status']})")


def fakeclass_train(model_or_name: nn.Module | str = "mnist/cnn-small", settings: FakeClassSettings | None = None,
                    out: str | Path = "runs/fakeclass", *, train: tuple[torch.Tensor, torch.Tensor] | None = None,
                    test: tuple[torch.Tensor, torch.Tensor] | None = None, resume: bool = True,
                    progress: bool = True, device: str | torch.device = "cpu", data_root: str | None = None,
                    log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run fake-class training into ``out`` and return the content of ``out/rounds.json``.

    ``model_or_name``: a ``K``-class classifier (zoo name, weights file or module; expanded to ``2K`` outputs
    by :func:`expand_fake_classes`), a ``2K``-output one, or, with ``settings.from_scratch``, only the
    architecture. ``train`` and ``test`` default to MNIST; the first half of ``train`` (a fixed split) trains
    the network, the second the reference network. The given model is copied, never changed.

    ``resume=True`` continues the run in ``out`` after its last finished round (its settings must be the
    same); ``resume=False`` starts over, deleting the previous run's files (not the cached reference network).
    ``log`` receives one line per round (default: ``print`` with ``progress``, nothing without).
    """
    log = log or (print if progress else (lambda _line: None))
    s = settings or FakeClassSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rounds_path = out / "rounds.json"
    state: dict[str, Any] | None = None
    if resume and rounds_path.exists():
        state = _resumable(json.loads(rounds_path.read_text()), s, out)
    elif not resume:
        _clean(out)
    train = train if train is not None else load_mnist("train", data_root)
    test = test if test is not None else load_mnist("test", data_root)
    sets = RunData(s, train, test)
    measure = FakeClassMetrics(s, sets)
    generation = Generation(s, sets, device)
    model = start_model(model_or_name, s, sets.shape, device)
    sizes = {"real_train": len(sets.real[0]), "reference_train": len(sets.half_b[0]), "test": len(test[0])}
    if state is not None and state.get("data") != sizes:
        raise ValueError(f"cannot resume {out}: its data had sizes {state.get('data')}, now {sizes}")
    history: list[dict[str, Any]] = state["rounds"] if state else []
    if state is None:
        state = {"kind": ROUNDS_KIND, "settings": asdict(s), "data": sizes, "status": "running", "rounds": history}
        atomic_write_json(rounds_path, state, kind=ROUNDS_KIND)  # the settings, checked by any later resume
    state = {"kind": ROUNDS_KIND, **state}  # the kind first, also in a file written before it had one
    if state["status"] != "running":
        log(f"the run in {out} is finished ({state['status']})")
        atomic_write_json(rounds_path, state, kind=ROUNDS_KIND)
        _plots(out, state)
        return state

    r = len(history)
    weights = out / "weights"
    if (weights / f"round_{r:03d}.safetensors").exists():
        model.load_state_dict(load_checkpoint(weights / f"round_{r:03d}.safetensors")["model"])
        if r:
            log(f"resuming after round {r - 1}")
    elif r == 0:
        if s.from_scratch:
            log(f"training from scratch on {len(sets.real[0])} real images first")
            fit(model, sets.real, TrainSettings(epochs=s.pretrain_epochs, lr=1e-3, batch_size=s.batch_size,
                                                seed=round_seed(s.seed, 0, PRETRAIN)),
                device=device, progress=progress)
        save_checkpoint(weights / "round_000.safetensors", {"round": 0, "model": model.state_dict()})
    else:
        raise FileNotFoundError(f"{weights / f'round_{r:03d}.safetensors'} is missing: cannot resume {out}")
    model.eval()
    data = [RoundData.load(out / "data" / f"round_{i:03d}.safetensors") for i in range(r)]
    reference = reference_network(model, s, sets.half_b, sets.eval_test, out / "reference", device=device,
                                  progress=progress, log=log)
    reference_sets = generation.reference_sets(reference)
    state["reference"] = reference_sets["summary"]
    per_round = s.epochs + 1
    logger = MetricsLogger(out, resume_step=r * per_round)
    bar = tqdm(total=s.rounds + 1, initial=r, desc="fake-class rounds", disable=not progress, dynamic_ncols=True)
    try:
        while True:
            started = time.perf_counter()
            bar.set_postfix_str(f"round {r}: generating")
            round_data, gen_metrics = generation.round(model, r, reference, measure, out)
            (out / "data").mkdir(exist_ok=True)
            round_data.save(out / "data" / f"round_{r:03d}.safetensors")
            data.append(round_data)
            before = measure.real_metrics(model)
            logger.log(r * per_round, {"round": r, "phase": "generation", **gen_metrics, **before})
            g = gen_metrics["m00_generation"]
            log(f"round {r}: generation success {g['success_rate']:.3f}, target prob {g['target_prob']:.3f}, "
                f"L0 {g['l0']:.1f}; test acc {before['m10_real_test']['acc']:.4f}")
            failed = g["success_rate"] < s.threshold or g["train_kept"] == 0
            if failed or r >= s.rounds:
                evaluation = measure.evaluate(model, r, data, reference_sets, epoch=0, final=True)
                evaluation["m08_final_sparse"] = {**{k: v for k, v in g.items() if k != "per_class"},
                                                  "robust": bool(failed), "per_class": g["per_class"]}
                metrics = _merge(gen_metrics, evaluation)
                logger.log(r * per_round + 1, {"round": r, "phase": "final", **metrics})
                history.append({"round": r, "final": True, "metrics": metrics,
                                "time_s": round(time.perf_counter() - started, 3)})
                state["status"] = "robust" if failed else "round limit"
                state["final"] = {"robust": bool(failed), "rounds_until_failure": r if failed else None,
                                  "trained_rounds": r, "m08_success_rate": g["success_rate"]}
                atomic_write_json(rounds_path, state, kind=ROUNDS_KIND)
                bar.update(1)
                log(f"stopped at round {r}: " + ("generation failed, the network is deemed robust" if failed
                                                 else f"round limit {s.rounds}, generation still succeeds"))
                break

            bar.set_postfix_str(f"round {r}: training")
            x, y, repeats = sets.training_data(data, s.num_classes, s.min_fake_share)
            last: dict[str, Any] = {}

            def after_epoch(epoch: int, record: dict[str, Any], r: int = r, last: dict = last) -> None:
                metrics = measure.evaluate(model, r, data, reference_sets, epoch=epoch, final=False)
                logger.log(r * per_round + epoch, {"round": r, "epoch": epoch, "phase": "train",
                                                   "train": record["train"], **metrics})
                last.clear()
                last.update(metrics)

            fit(model, (x, y), TrainSettings(epochs=s.epochs, lr=s.lr, batch_size=s.batch_size,
                                             seed=round_seed(s.seed, r, FIT)),
                device=device, progress=progress, on_epoch_end=after_epoch)
            model.eval()
            save_checkpoint(weights / f"round_{r + 1:03d}.safetensors", {"round": r + 1, "model": model.state_dict()})
            save_trained(model, s, r + 1, out / "model")
            metrics = _merge(gen_metrics, last)
            history.append({"round": r, "metrics": metrics, "before_training": before,
                            "training_data": {"real": len(sets.real[0]), "generated": sum(len(d.x_train) for d in data),
                                              "repeats": repeats},
                            "time_s": round(time.perf_counter() - started, 3)})
            atomic_write_json(rounds_path, state, kind=ROUNDS_KIND)
            _plots(out, state)
            log(f"round {r} trained: detected (2) {_rate(metrics, 'm02_current_batch')}, (4) "
                f"{_rate(metrics, 'm04_test_current')}, (6) {_rate(metrics, 'm06_other_network')}; test acc "
                f"{metrics['m10_real_test']['acc']:.4f}")
            bar.update(1)
            r += 1
    finally:
        logger.close()
        bar.close()
    _plots(out, state)
    return state
