"""Evaluation: clean and robust accuracy, success rates, confidence and norms, overall and per class."""

from alva.evaluation.accuracy import accuracy, predict_logits
from alva.evaluation.robustness import RobustnessReport, eps_curve, evaluate_attack, run_attack, summarize
from alva.results import Batch

__all__ = ["Batch", "RobustnessReport", "accuracy", "eps_curve", "evaluate_attack", "predict_logits", "run_attack",
           "summarize"]
