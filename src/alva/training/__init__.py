"""Training: one seeded, resumable loop; objectives plug into it."""

from alva.training.classifier import ClassifierRun, train_classifier
from alva.training.loop import TrainingDiverged, TrainSettings, fit, learning_rate
from alva.training.objectives import OBJECTIVES, Objective, Standard, get_objective

__all__ = ["OBJECTIVES", "ClassifierRun", "Objective", "Standard", "TrainSettings", "TrainingDiverged", "fit",
           "get_objective", "learning_rate", "train_classifier"]
