"""Convergence training (seed 000, last section): generate ALVA samples against the current classifier,
add the valid ones to its training data, retrain, and repeat until ALVA no longer fools it.

Every round is measured on latent vectors that are never trained on, and written to ``out/rounds.json``
atomically, so a stopped run resumes after its last finished round.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alva.attacks import PGD
from alva.attacks.alva import ALVA, alva_summary
from alva.evaluation.accuracy import accuracy
from alva.evaluation.robustness import evaluate_attack
from alva.models import zoo
from alva.models.generative import draw_labels, draw_noise
from alva.report.figures import eps_curve_plot
from alva.tracking.checkpoint import differences, refuse_changes
from alva.tracking.files import atomic_write_json
from alva.tracking.verify import tensors_sha256
from alva.training.augment import GenerationSettings, generate_dataset, load_dataset
from alva.training.loop import TrainSettings, fit

EVAL_SEED = 987_654  # latent vectors for measuring; generation uses seed + round, never this


@dataclass
class ConvergenceSettings:
    rounds: int = 3
    threshold: float = 0.05  # stop once the ALVA success rate on unseen latent vectors is below this
    n_eval: int = 1000
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    training: TrainSettings = field(default_factory=lambda: TrainSettings(epochs=1, lr=5e-4))
    pgd_eps: float = 0.1  # pixel-space PGD robustness, measured each round on a fixed test subset


def measure_round(classifier: nn.Module, generator: nn.Module, oracle: nn.Module, settings: ConvergenceSettings,
                  test: tuple[torch.Tensor, torch.Tensor], pgd_subset: tuple[torch.Tensor, torch.Tensor]
                  ) -> dict[str, float]:
    """ALVA success, validity and valid adversarial rate on unseen latent vectors; clean test accuracy;
    PGD-20 robust accuracy at ``pgd_eps`` on a fixed test subset."""
    g = settings.generation
    attack = ALVA(generator, classifier, eps=g.eps, steps=g.steps, norm=g.norm, oracle=oracle)
    gen = torch.Generator().manual_seed(EVAL_SEED)
    z = draw_noise(generator, settings.n_eval, generator=gen)
    y = draw_labels(generator, settings.n_eval, generator=gen) if attack.conditional else None
    stats = alva_summary(attack(z, y))
    report, _ = evaluate_attack(PGD(classifier, eps=settings.pgd_eps, steps=20, seed=0), *pgd_subset,
                                progress=False)
    return {"alva_success": stats["success"], "alva_validity": stats["validity"],
            "alva_valid_adversarial": stats["valid_adversarial"], "clean_test_acc": accuracy(classifier, *test),
            "pgd_robust_acc": report.robust_acc}


def _config(settings: ConvergenceSettings, classifier: nn.Module, generator: nn.Module, oracle: nn.Module,
            train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
    """What a resumed convergence run must share with the stopped one: the settings, and the SHA-256 of the
    networks' weights and of the data."""
    def weights(net: nn.Module) -> str:
        return tensors_sha256(dict(net.state_dict()))

    def data(pair: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        return {"size": len(pair[0]), "sha256": tensors_sha256({"x": pair[0], "y": pair[1]})}

    config = {**asdict(settings), "classifier_sha256": weights(classifier), "generator_sha256": weights(generator),
              "oracle_sha256": weights(oracle), "train_data": data(train), "test_data": data(test)}
    return json.loads(json.dumps(config))  # as the file holds it (lists, not tuples)


def converge(classifier: nn.Module, generator: nn.Module, oracle: nn.Module,
             train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
             pgd_subset: tuple[torch.Tensor, torch.Tensor], out: str | Path, settings: ConvergenceSettings, *,
             progress: bool = True, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run convergence training into ``out``; returns one record per round (round 0: before any retraining).

    The classifier is copied, never changed in place; ``out/model.safetensors`` holds the last round's. A rerun
    into ``out`` goes on after the last finished round; it refuses other settings (but for ``rounds``), networks
    or data than those recorded in ``out/config.json``, listing every difference.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = _config(settings, classifier, generator, oracle, train, test)
    rounds_path, config_path = out / "rounds.json", out / "config.json"
    history: list[dict[str, Any]] = json.loads(rounds_path.read_text()) if rounds_path.exists() else []
    if history and config_path.exists():
        refuse_changes(out, differences(json.loads(config_path.read_text()), config, may_change=("rounds",)))
    atomic_write_json(config_path, config, kind="converge-config")
    classifier = copy.deepcopy(classifier)
    if history and (out / "model.safetensors").exists():
        classifier = zoo.load(out / "model.safetensors")
        log(f"resuming after round {history[-1]['round']}")
    while True:
        if not history or "metrics" not in history[-1]:
            if not history:
                history.append({"round": 0})
            record = history[-1]
            record["metrics"] = measure_round(classifier, generator, oracle, settings, test, pgd_subset)
            atomic_write_json(rounds_path, history)
            log(f"round {record['round']}: " + ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items()))
        r = history[-1]["round"]
        last = history[-1]["metrics"]
        if last["alva_success"] < settings.threshold or r >= settings.rounds:
            break
        generation = GenerationSettings(**{**asdict(settings.generation), "seed": settings.generation.seed + r})
        generate_dataset(generator, classifier, oracle, out / f"round-{r + 1}" / "data", generation,
                         progress=progress)
        extra = [load_dataset(out / f"round-{k}" / "data") for k in range(1, r + 2)]
        x = torch.cat([train[0], *[e[0] for e in extra]])
        y = torch.cat([train[1], *[e[1] for e in extra]])
        fit(classifier, (x, y), TrainSettings(**{**asdict(settings.training), "seed": settings.training.seed + r}),
            progress=progress)
        classifier.eval()
        zoo.save(classifier, {**zoo.architecture_card(classifier), "converged_rounds": r + 1}, out / "model")
        history.append({"round": r + 1, "added": sum(len(e[0]) for e in extra)})
        atomic_write_json(rounds_path, history)
    curves = {name: [{"round": h["round"], "rate": h["metrics"][key]} for h in history]
              for name, key in (("ALVA success", "alva_success"), ("valid adversarial", "alva_valid_adversarial"),
                                ("clean test acc", "clean_test_acc"), ("PGD robust acc", "pgd_robust_acc"))}
    eps_curve_plot(out / "rounds.png", curves, metric="rate", title="convergence training", x="round")
    return history
