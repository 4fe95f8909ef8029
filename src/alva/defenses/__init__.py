"""Defences: a binary detector of adversarial inputs and the adaptive attack against it."""

from alva.defenses.detector import (
    DetectedModel,
    DetectorAwareLoss,
    DetectorObjective,
    detection_auc,
    detector_scores,
    detector_threshold,
    make_detector,
    roc_auc,
    train_detector,
)

__all__ = ["DetectedModel", "DetectorAwareLoss", "DetectorObjective", "detection_auc", "detector_scores",
           "detector_threshold", "make_detector", "roc_auc", "train_detector"]
