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
from alva.training.loop import TrainingDiverged, TrainSettings, fit, learning_rate
from alva.training.multilabel import asymmetric_loss, multilabel_bce
from alva.training.objectives import AsymmetricLoss, ManualObjective, MultiLabel, MultiLabelBCE, Objective, Standard
from alva.training.registry import OBJECTIVES, get_objective

__all__ = [
    "ADVERSARIAL_OBJECTIVES", "FGSMMix", "FastFGSM", "LogisticFGSM", "OBJECTIVES", "PGDTraining", "TRADES",
    "AsymmetricLoss", "ClassifierRun", "ManualObjective", "MultiLabel", "MultiLabelBCE", "Objective", "Standard",
    "TrainSettings", "TrainingDiverged", "asymmetric_loss", "fit", "get_objective", "learning_rate",
    "logistic_fgsm_loss", "multilabel_bce", "perturb", "train_classifier",
]
