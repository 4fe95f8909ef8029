"""alva: adversarial machine learning for PyTorch.

The main API, importable from ``alva`` itself (each name is loaded on first use)::

    import alva
    model = alva.load("mnist/cnn-small")
    x, y = alva.fixed_subset(*alva.load_mnist("test"), 1000, seed=0)
    report, _ = alva.evaluate_attack(alva.PGD(model, eps=0.3, steps=40, seed=0), x, y)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from alva.models.generative import (  # noqa: E402
    ConditionalGenerativeModel,
    GenerativeModel,
    is_generative_model,
)

_API: dict[str, str] = {
    # models and data
    "load": "alva.models", "load_generator": "alva.models", "create": "alva.models", "save": "alva.models",
    "Normalized": "alva.models", "load_mnist": "alva.data", "fixed_subset": "alva.data",
    # attacks
    "Attack": "alva.attacks", "AttackResult": "alva.attacks", "attack_mode": "alva.attacks",
    "FGSM": "alva.attacks", "PGD": "alva.attacks", "APGD": "alva.attacks", "APGDTargeted": "alva.attacks",
    "Square": "alva.attacks", "DifferentialEvolution": "alva.attacks", "OnePixel": "alva.attacks",
    "SparseConfident": "alva.attacks", "TransferAttack": "alva.attacks", "AdvGANAttack": "alva.attacks",
    "ALVA": "alva.attacks", "UnrestrictedGeneratorAttack": "alva.attacks", "Repeated": "alva.attacks",
    "GradientAttack": "alva.attacks", "SearchAttack": "alva.attacks", "Norm": "alva.attacks",
    "REGISTRY": "alva.attacks", "build": "alva.attacks",
    # evaluation and training
    "evaluate_attack": "alva.evaluation", "eps_curve": "alva.evaluation", "accuracy": "alva.evaluation",
    "strong_evaluation": "alva.evaluation.strong", "fit": "alva.training", "TrainSettings": "alva.training",
    "train_substitute": "alva.training.substitute",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alva' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = ["ConditionalGenerativeModel", "GenerativeModel", "__version__", "is_generative_model", *_API]
