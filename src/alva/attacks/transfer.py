"""Transfer attacks from a substitute model (Papernot et al. 2017, "Practical Black-Box Attacks against
Machine Learning"; Szegedy et al. 2014 for transferability).

A substitute classifier (trained by :func:`alva.training.substitute.train_substitute`, on the target's data or
on images labelled by querying the target) is attacked with any white-box attack of alva, and its images are
checked once on the target.

Query counting: a query is one image passed through the target. :class:`QueryCounter` wraps a target, counts
every image it sees and refuses to go past a budget, so the counts reported here are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from alva.attacks.base import Attack, AttackInputError, AttackResult
from alva.attacks.ensemble import EnsembleModel
from alva.attacks.pgd import PGD

__all__ = ["QueryBudgetExceeded", "QueryCounter", "TransferAttack"]


class QueryBudgetExceeded(RuntimeError):
    """A forward pass would take the target past its query budget."""


class QueryCounter(nn.Module):
    """Wraps a model, counts the images it is queried on (``count``) and refuses any call that would go past
    ``budget`` (None: no limit). The refused call is not counted and does not reach the model."""

    def __init__(self, model: nn.Module, budget: int | None = None) -> None:
        super().__init__()
        if budget is not None and (isinstance(budget, bool) or int(budget) != budget or budget < 0):
            raise ValueError(f"query budget must be an integer >= 0, got {budget!r}")
        self.model = model
        self.budget = None if budget is None else int(budget)
        self.count = 0

    @property
    def left(self) -> int | None:
        return None if self.budget is None else self.budget - self.count

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        if self.budget is not None and self.count + n > self.budget:
            raise QueryBudgetExceeded(f"{n} more queries would exceed the budget of {self.budget} "
                                      f"({self.count} used)")
        self.count += n
        return self.model(x)


class TransferAttack(Attack):
    """Attack ``substitute`` with a white-box attack and check the images on ``target_model``.

    Args:
        target_model: the model under attack; only its outputs are used (no gradient), on the clean batch (the
            interface's clean logits) and on the final images: ``queries`` is exactly 2 per sample.
        substitute: a classifier trained to imitate the target (see
            :func:`alva.training.substitute.train_substitute`), or several: a sequence of classifiers is attacked
            as one :class:`~alva.attacks.ensemble.EnsembleModel` (Liu et al. 2017).
        attack_factory: builds the white-box attack from the substitute (the ensemble of several), e.g.
            ``lambda m: PGD(m, eps=0.3, steps=40)`` or ``lambda m: MIFGSM(m, eps=0.3)``; default PGD-40 at
            ``eps``. Its bounds must match.
        eps: the radius of the default attack.
        ensemble: how several substitutes are combined: ``"logits"`` (mean logits) or ``"loss"`` (mean of
            their losses, in the attacks that take it; see :class:`~alva.attacks.ensemble.EnsembleModel`).

    ``loss``, ``target``, ``early_stop``, ``bounds`` and ``seed`` are those of every
    :class:`~alva.attacks.base.Attack`; ``loss`` and ``target`` define success on the target model. A target
    tensor or rule is passed to the substitute attack too, so a targeted transfer aims at the same class.

    ``success`` is judged on the target. ``extras`` holds ``substitute_success`` (the attack's success on the
    substitute), ``substitute_queries`` (forward passes of the substitute, free for the attacker) and
    ``substitute_logits``.
    """

    def __init__(self, target_model: nn.Module, substitute: nn.Module | Sequence[nn.Module],
                 attack_factory: Callable[[nn.Module], Attack] | None = None, *, eps: float = 0.3,
                 ensemble: str = "logits", **kwargs) -> None:
        super().__init__(target_model, **kwargs)
        if not isinstance(substitute, nn.Module):
            if not isinstance(substitute, Sequence) or not all(isinstance(m, nn.Module) for m in substitute):
                raise AttackInputError(f"substitute must be a torch.nn.Module or a sequence of them, got "
                                       f"{type(substitute).__name__}")
            substitute = substitute[0] if len(substitute) == 1 else EnsembleModel(substitute, ensemble)
        if any(m is target_model for m in substitute.modules()):
            raise AttackInputError("the substitute is the target itself: that is a white-box attack")
        self.substitute = substitute
        self.eps = float(eps)
        factory = attack_factory or (lambda m: PGD(m, eps=self.eps, steps=40, bounds=self.bounds, seed=self.seed))
        self.inner = factory(substitute)
        if not isinstance(self.inner, Attack):
            raise AttackInputError(f"attack_factory must return an alva Attack, got {type(self.inner).__name__}")
        if self.inner.model is not substitute:
            raise AttackInputError("attack_factory must build the attack on the substitute it is given")
        if tuple(self.inner.bounds) != tuple(self.bounds):
            raise AttackInputError(f"the substitute attack's bounds {self.inner.bounds} differ from {self.bounds}")

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        inner = self.inner(x, y, target)  # white-box on the substitute: no target query
        x_adv = inner.x_adv.detach()
        with torch.no_grad():
            adv_logits = self.model(x_adv)  # the one final query per sample
        queries = torch.full((len(x),), 2, dtype=torch.long, device=x.device)  # clean logits + final check
        success = self.loss.success(adv_logits, y, target)
        extras = {"substitute_success": inner.success, "substitute_queries": inner.queries,
                  "substitute_logits": inner.adv_logits}
        return AttackResult(x_adv, success, inner.steps, queries, adv_logits, clean_logits, target, extras)

