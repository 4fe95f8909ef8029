"""Transfer attacks from a substitute model (Papernot et al. 2017, "Practical Black-Box Attacks against
Machine Learning"; Szegedy et al. 2014 for transferability).

A substitute classifier is trained either on the same data as the target (``mode="same-data"``: no query to
the target) or on images labelled by querying the target (``mode="query-labels"``: one query per image,
never more than ``query_budget``; optional Jacobian-based augmentation rounds as in Papernot et al.). Any
white-box attack of alva then runs on the substitute, and its images are checked once on the target.

Query counting: a query is one image passed through the target. :class:`QueryCounter` wraps a target, counts
every image it sees and refuses to go past a budget, so the counts reported here are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from alva.attacks.base import Attack, AttackInputError, AttackResult
from alva.attacks.pgd import PGD

__all__ = ["MODES", "QueryBudgetExceeded", "QueryCounter", "TransferAttack", "train_substitute"]

MODES = ("same-data", "query-labels")


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
        substitute: a classifier trained to imitate the target (see :func:`train_substitute`).
        attack_factory: builds the white-box attack from the substitute, e.g.
            ``lambda m: PGD(m, eps=0.3, steps=40)``; default PGD-40 at ``eps``. Its bounds must match.
        eps: the radius of the default attack.
        loss, target, early_stop, bounds, seed: as for every :class:`~alva.attacks.base.Attack`; ``loss`` and
            ``target`` define success on the target model. A target tensor or rule is passed to the substitute
            attack too, so a targeted transfer aims at the same class.

    ``success`` is judged on the target. ``extras`` holds ``substitute_success`` (the attack's success on the
    substitute), ``substitute_queries`` (forward passes of the substitute, free for the attacker) and
    ``substitute_logits``.
    """

    def __init__(self, target_model: nn.Module, substitute: nn.Module,
                 attack_factory: Callable[[nn.Module], Attack] | None = None, *, eps: float = 0.3, **kwargs) -> None:
        super().__init__(target_model, **kwargs)
        if not isinstance(substitute, nn.Module):
            raise AttackInputError(f"substitute must be a torch.nn.Module, got {type(substitute).__name__}")
        if substitute is target_model:
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
        n = len(x)
        queries = torch.full((n,), 2, dtype=torch.long, device=x.device)  # clean logits + final check
        success = self.loss.success(adv_logits, y, target)
        extras = {"substitute_success": inner.success, "substitute_queries": inner.queries,
                  "substitute_logits": inner.adv_logits}
        return AttackResult(x_adv, success, inner.steps, queries, adv_logits, clean_logits, target, extras)


def _label(counter: QueryCounter, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """The target's labels of ``x``, one query per image."""
    with torch.no_grad():
        return torch.cat([counter(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def _jacobian_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lam: float,
                   bounds: tuple[float, float]) -> torch.Tensor:
    """Papernot et al. 2017: ``x + lam * sign(d F_y(x) / dx)`` for the substitute F and the oracle label y."""
    was = model.training
    model.eval()
    try:
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            out = model(xg).gather(1, y[:, None]).sum()
            (grad,) = torch.autograd.grad(out, xg)
    finally:
        model.train(was)
    return (x + lam * grad.sign()).clamp(*bounds).detach()


def train_substitute(target: nn.Module | None, data: tuple[torch.Tensor, torch.Tensor] | torch.Tensor, *,
                     mode: str = "same-data", query_budget: int | None = None, architecture: str = "mlp",
                     settings=None, jacobian_rounds: int = 0, lam: float = 0.1,
                     bounds: tuple[float, float] = (0.0, 1.0), batch_size: int = 500, seed: int = 0,
                     out: str | Path | None = None, progress: bool = False, device: str | torch.device = "cpu"
                     ) -> tuple[nn.Module, int]:
    """Train a substitute of ``target``; returns ``(substitute, queries)``, the target queries spent.

    mode ``"same-data"``: train on ``data = (x, y)`` with its own labels; ``target`` may be None; 0 queries.
    mode ``"query-labels"``: label images of ``data`` (``x`` or ``(x, y)``; ``y`` is ignored) by querying
    ``target``, at most ``query_budget`` images in all. Without Jacobian augmentation the first
    ``query_budget`` images are labelled (one query each). With ``jacobian_rounds = r > 0`` the first
    ``budget // 2**r`` images seed the set, and each round trains the substitute, adds
    ``x + lam * sign(grad F_label(x))`` for the set so far (truncated to the budget left) and labels the new
    points with the target (Papernot et al. 2017, Algorithm 1).

    ``settings`` is a :class:`~alva.training.TrainSettings` (default: 2 epochs, batch 128, Adam 1e-3, ``seed``);
    training goes through :func:`alva.training.loop.fit`. ``out`` keeps the last round's checkpoint and metrics.
    """
    from alva.models import create
    from alva.training.loop import TrainSettings, fit

    if mode not in MODES:
        raise ValueError(f"unknown substitute mode {mode!r}; choose one of {MODES}")
    settings = settings or TrainSettings(epochs=2, batch_size=128, lr=1e-3, seed=seed)
    torch.manual_seed(seed)
    x = data[0] if isinstance(data, (tuple, list)) else data
    model = create(architecture, num_classes=10, in_shape=tuple(x.shape[1:]))
    if mode == "same-data":
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise ValueError("mode 'same-data' needs data = (x, y)")
        fit(model, (x, data[1]), settings, out=out, progress=progress, device=device)
        return model, 0

    if target is None:
        raise ValueError("mode 'query-labels' needs the target model to query")
    if query_budget is None or isinstance(query_budget, bool) or int(query_budget) != query_budget \
            or query_budget < 1:
        raise ValueError(f"mode 'query-labels' needs query_budget, an integer >= 1, got {query_budget!r}")
    if jacobian_rounds < 0:
        raise ValueError(f"jacobian_rounds must be >= 0, got {jacobian_rounds}")
    counter = QueryCounter(target, query_budget)
    was = target.training
    target.eval()
    try:
        n0 = min(len(x), max(1, query_budget // 2 ** jacobian_rounds))
        xs = x[:n0].to(device)
        ys = _label(counter, xs, batch_size)
        for r in range(jacobian_rounds + 1):
            model = create(architecture, num_classes=10, in_shape=tuple(x.shape[1:]))
            last = r == jacobian_rounds or counter.left == 0
            fit(model, (xs, ys), settings, out=out if last else None, progress=progress, device=device)
            if last:
                break
            new = _jacobian_step(model, xs[:counter.left], ys[:counter.left], lam, bounds)
            xs, ys = torch.cat([xs, new]), torch.cat([ys, _label(counter, new, batch_size)])
    finally:
        target.train(was)
    return model, counter.count
