"""Evaluation: clean and robust accuracy, success rates, confidence and norms, overall and per class."""

from alva.evaluation.accuracy import accuracy, predict_logits
from alva.evaluation.robustness import (
    MinimumNormFigures,
    RobustnessReport,
    SampleFigures,
    attack_figures,
    eps_curve,
    evaluate_attack,
    report_from,
    run_attack,
    summarize,
)
from alva.results import Batch

__all__ = ["Batch", "MinimumNormFigures", "RobustnessReport", "SampleFigures", "accuracy", "attack_figures",
           "eps_curve", "evaluate_attack", "predict_logits", "report_from", "run_attack", "summarize"]
