"""A binary detector of adversarial inputs (in the spirit of Metzen et al. 2017, "On Detecting Adversarial
Perturbations"; Grosse et al. 2017), its ROC AUC, and an adaptive attack that targets classifier and
detector together (Carlini and Wagner 2017, "Adversarial Examples Are Not Easily Detected").

The detector is a small classifier with one output: a logit, high for "adversarial". It is trained through
the one training loop (:func:`alva.training.loop.fit`) with :class:`DetectorObjective` (binary
cross-entropy); label 1 is adversarial, 0 clean.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from alva.attacks.base import attack_mode
from alva.attacks.errors import AttackInputError
from alva.attacks.losses import AttackLoss, ClassLoss, as_attack_loss
from alva.training.objectives import Objective

__all__ = ["DetectedModel", "DetectorAwareLoss", "DetectorObjective", "detection_auc", "detector_scores",
           "detector_threshold", "make_detector", "roc_auc", "train_detector"]


def make_detector(architecture: str, in_shape: tuple[int, ...]) -> nn.Module:
    """A fresh detector for images of ``in_shape`` (C, H, W): ``architecture`` (a name of
    :data:`alva.models.ARCHITECTURES` or the user's ``FILE.py:FUNCTION``, see :func:`alva.models.build`) with
    one output logit."""
    from alva.models import build

    return build(architecture, in_shape=in_shape, num_classes=1)


def _scores(logits: torch.Tensor) -> torch.Tensor:
    return logits.reshape(len(logits), -1)[:, 0]


def roc_auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 positive): the probability that a
    random positive scores above a random negative, ties counting one half (Mann-Whitney U with mid-ranks)."""
    scores, labels = scores.detach().flatten().double().cpu(), labels.detach().flatten().cpu().bool()
    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} scores but {len(labels)} labels")
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs both positives and negatives")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    _, inverse, counts = torch.unique(scores, sorted=True, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()  # 1-based rank of the last member of each group of equal scores
    ranks = (ends - (counts.double() - 1) / 2)[inverse]
    u = ranks[labels].sum().item() - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def detector_scores(detector: nn.Module, x: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """The detector's logits (high = adversarial) for ``x``, in eval mode, on the CPU."""
    device = next(detector.parameters()).device
    with attack_mode(detector), torch.no_grad():
        return torch.cat([_scores(detector(x[i:i + batch_size].to(device))).cpu()
                          for i in range(0, len(x), batch_size)])


def detection_auc(detector: nn.Module, clean: torch.Tensor, adv: torch.Tensor, *, batch_size: int = 500) -> float:
    """ROC AUC of ``detector`` separating ``adv`` (positive) from ``clean`` (negative)."""
    scores = torch.cat([detector_scores(detector, clean, batch_size=batch_size),
                        detector_scores(detector, adv, batch_size=batch_size)])
    labels = torch.cat([torch.zeros(len(clean), dtype=torch.bool), torch.ones(len(adv), dtype=torch.bool)])
    return roc_auc(scores, labels)


def detector_threshold(detector: nn.Module, clean: torch.Tensor, fpr: float = 0.05) -> float:
    """The logit above which an input is flagged, so that a fraction ``fpr`` of ``clean`` is flagged."""
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    return torch.quantile(detector_scores(detector, clean).double(), 1.0 - fpr).item()


class DetectorObjective(Objective):
    """Binary cross-entropy on the detector's logit; labels 1 = adversarial, 0 = clean.

    Evaluation: accuracy at logit 0 and ROC AUC.
    """

    name = "detector"

    def __call__(self, model, x, y):
        logits = _scores(model(x))
        loss = F.binary_cross_entropy_with_logits(logits, y.float())
        return loss, {"loss": loss.item(), "acc": ((logits > 0) == (y > 0.5)).float().mean().item()}

    def evaluate(self, model, x, y):
        scores = detector_scores(model, x)
        labels = y.cpu() > 0.5
        return {"acc": ((scores > 0) == labels).float().mean().item(), "auc": roc_auc(scores, labels)}


def train_detector(clean: torch.Tensor, adversarial: torch.Tensor, *, architecture: str = "cnn-small",
                   settings=None, seed: int = 0, eval_data: tuple[torch.Tensor, torch.Tensor] | None = None,
                   out: str | Path | None = None, progress: bool = False, device: str | torch.device = "cpu"
                   ) -> nn.Module:
    """Train a detector on ``clean`` (label 0) and ``adversarial`` (label 1) images through ``fit``.

    ``settings``: a :class:`~alva.training.loop.TrainSettings` (default 3 epochs, batch 128, Adam 1e-3,
    ``seed``). ``eval_data``: ``(clean, adversarial)`` held out, evaluated (acc, AUC) after every epoch.
    """
    from alva.training.loop import TrainSettings, fit

    if len(clean) == 0 or len(adversarial) == 0:
        raise ValueError("train_detector needs clean and adversarial images")
    if clean.shape[1:] != adversarial.shape[1:]:
        raise ValueError(f"clean images {tuple(clean.shape[1:])} and adversarial ones "
                         f"{tuple(adversarial.shape[1:])} differ in shape")
    settings = settings or TrainSettings(epochs=3, batch_size=128, lr=1e-3, seed=seed)
    torch.manual_seed(settings.seed)
    if clean.ndim != 4:
        raise ValueError(f"a detector trains on images N x C x H x W, got shape {tuple(clean.shape)}")
    detector = make_detector(architecture, (clean.shape[1], clean.shape[2], clean.shape[3]))

    def pair(c: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([c, a]).detach().cpu(), torch.cat([torch.zeros(len(c)), torch.ones(len(a))]).long()

    fit(detector, pair(clean, adversarial), settings, objective=DetectorObjective(),
        eval_data=pair(*eval_data) if eval_data is not None else None, out=out, progress=progress, device=device)
    detector.eval()
    return detector


class DetectedModel(nn.Module):
    """A classifier and a detector as one model: its output is the classifier's logits with the detector's
    logit appended as the last column (``N x (K + 1)``). Attack it with :class:`DetectorAwareLoss`, which
    every alva attack (PGD, APGD, ...) accepts as ``loss=``: that is the adaptive attack."""

    def __init__(self, classifier: nn.Module, detector: nn.Module) -> None:
        super().__init__()
        self.classifier, self.detector = classifier, detector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.classifier(x), _scores(self.detector(x))[:, None]], dim=1)


class DetectorAwareLoss(AttackLoss):
    """The adaptive objective on a :class:`DetectedModel`: fool the classifier and stay below the detector's
    flagging ``threshold``.

    With ``hinge=True`` (default; Carlini and Wagner 2017 style) the loss is
    ``min(base, kappa) - c * max(detector - threshold + detector_margin, 0)``: each term stops pulling once its
    goal is met with some margin, so the steps go where they are still needed. With ``hinge=False`` it is the
    plain ``base - c * detector``, where a detector logit that keeps falling can drown the classifier term.
    ``base``: ``"margin"`` (default; Carlini-Wagner, positive once fooled) or ``"ce"``.

    Success: the classifier is fooled (untargeted: wrong class; targeted: the target) AND the detector's
    logit is below ``threshold`` (the input passes as clean).
    """

    target_rules = ClassLoss.target_rules

    def __init__(self, c: float = 1.0, threshold: float = 0.0, base: str = "margin", *, hinge: bool = True,
                 kappa: float = 2.0, detector_margin: float = 1.0) -> None:
        if not 0.0 <= c < float("inf"):
            raise AttackInputError(f"c must be >= 0 and finite, got {c}")
        if not (0.0 <= kappa < float("inf") and 0.0 <= detector_margin < float("inf")):
            raise AttackInputError(f"kappa and detector_margin must be >= 0 and finite, got {kappa}, "
                                   f"{detector_margin}")
        self.c, self.threshold = float(c), float(threshold)
        self.hinge, self.kappa, self.detector_margin = bool(hinge), float(kappa), float(detector_margin)
        self.base = as_attack_loss(base)
        if not isinstance(self.base, ClassLoss):
            raise AttackInputError("the base loss must be a class loss ('ce' or 'margin')")

    def __call__(self, logits, y, target):
        cls, det = self.base(logits[:, :-1], y, target), logits[:, -1]
        if not self.hinge:
            return cls - self.c * det
        return cls.clamp(max=self.kappa) - self.c * (det - self.threshold + self.detector_margin).clamp(min=0)

    def fooled(self, logits, y, target) -> torch.Tensor:
        return self.base.success(logits[:, :-1], y, target)

    def evades(self, logits) -> torch.Tensor:
        return logits[:, -1] < self.threshold

    def success(self, logits, y, target):
        return self.fooled(logits, y, target) & self.evades(logits)

    def check_labels(self, y, num_outputs):
        return self.base.check_labels(y, None if num_outputs is None else num_outputs - 1)

    def check_targets(self, target, y, num_outputs):
        return self.base.check_targets(target, y, num_outputs - 1)

    def pick_targets(self, rule, y, clean_logits, uniform):
        return self.base.pick_targets(rule, y, clean_logits[:, :-1], uniform)

    def __repr__(self) -> str:
        return (f"DetectorAwareLoss(c={self.c}, threshold={self.threshold}, base={self.base!r}, hinge={self.hinge}, "
                f"kappa={self.kappa}, detector_margin={self.detector_margin})")
