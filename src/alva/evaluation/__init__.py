"""Evaluation: clean and robust accuracy, success rates, confidence and norms, overall and per class."""

from alva.evaluation.accuracy import accuracy, predict_logits

__all__ = ["accuracy", "predict_logits"]
