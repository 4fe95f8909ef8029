"""Training: one seeded, resumable loop; objectives plug into it."""

from alva.training.adversarial import (
    ADVERSARIAL_OBJECTIVES,
    TRADES,
    FastFGSM,
    FGSMMix,
    LogisticFGSM,
    PGDTraining,
    logistic_fgsm_loss,
    perturb,
)
from alva.training.classifier import ClassifierRun, train_classifier
from alva.training.fast_guards import FAST_GUARD_OBJECTIVES, NFGSM, GradAlign, gradient_misalignment, noisy_fgsm
from alva.training.loop import TrainingDiverged, TrainSettings, fit, learning_rate
from alva.training.multilabel import asymmetric_loss, multilabel_bce
from alva.training.objectives import AsymmetricLoss, ManualObjective, MultiLabel, MultiLabelBCE, Objective, Standard
from alva.training.registry import OBJECTIVES, get_objective

__all__ = [
    "ADVERSARIAL_OBJECTIVES", "FAST_GUARD_OBJECTIVES", "FGSMMix", "GradAlign", "NFGSM",
    "FastFGSM", "LogisticFGSM", "OBJECTIVES", "PGDTraining", "TRADES",
    "AsymmetricLoss", "ClassifierRun", "ManualObjective", "MultiLabel", "MultiLabelBCE", "Objective", "Standard",
    "TrainSettings", "TrainingDiverged", "asymmetric_loss", "fit", "get_objective", "learning_rate",
    "logistic_fgsm_loss", "gradient_misalignment", "multilabel_bce", "noisy_fgsm", "perturb", "train_classifier",
]
