"""The attack engine: the loop and its bookkeeping, written once for every attack.

:class:`~alva.attacks.base.Attack` checks the batch, holds the models in attack mode, picks targets and seeds
the call. Below it, one call of an engine attack is a :class:`Run`: the best point of each sample so far (by
one rule, :class:`~alva.attacks.keep_best.KeepBest`), the per-sample step and query counters, the keyed random numbers
(:class:`~alva.attacks.keyed.KeyedRandom`) and, at the end, the success check through the attack's
:class:`~alva.attacks.losses.AttackLoss`. A run is made of searches (restarts): each one works on the rows
still attacked, held in a :class:`Rows` state from which finished rows are dropped (early stop).

An attack supplies only what is its own (after foolbox 3's ``attacks/base.py`` and
``gradient_descent_base.py``):

- :class:`GradientAttack`: ``start`` (the first iterate) and ``step`` (the next iterate from the gradient of
  the loss); optionally ``observe`` (per-step statistics, as APGD's step-size rule) and ``score``.
- :class:`SearchAttack` (score-based, no gradient): ``start`` and ``propose`` (a candidate per row); the
  engine evaluates it, counts the query and accepts it where ``accept`` says (default: a success beats a
  failure, else a higher loss). :class:`~alva.attacks.population.PopulationSearch`: the same with a
  population of candidates per row (differential evolution).

:class:`Repeated` runs any engine attack several times (restarts) and keeps each sample's worst case.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from alva.attacks.base import Attack, AttackResult
from alva.attacks.errors import positive_int
from alva.attacks.keep_best import LAST_ITERATE, PGD_RULE, SCORE_RULE, KeepBest
from alva.attacks.keyed import KeyedRandom, Uniform

__all__ = ["LAST_ITERATE", "PGD_RULE", "SCORE_RULE", "EngineAttack", "GradientAttack", "KeepBest", "Repeated", "Rows",
           "Run", "SearchAttack"]


class Rows:
    """The per-row state of the samples a search still works on.

    ``rows`` holds their indices in the batch (None: the whole batch, in order, which spares the indexing);
    every other tensor attribute with one entry per row is a part of the state. :meth:`keep` drops rows from
    all of them at once, so an attack that adds state (momentum, a step size per row) never filters it.
    The state every engine attack shares is declared here; an attack with more state declares it in a
    subclass (its :attr:`GradientAttack.rows_type`).
    """

    x0: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None
    loss_target: torch.Tensor | None
    x: torch.Tensor
    grad: torch.Tensor
    stream: tuple[int, ...]
    success: torch.Tensor
    objective: torch.Tensor

    def __init__(self, rows: torch.Tensor | None, n: int, **state: object) -> None:
        self.rows = rows
        self.n = n
        for name, value in state.items():
            setattr(self, name, value)

    def keep(self, mask: torch.Tensor) -> None:
        """Keep only the rows where ``mask`` is True."""
        if self.rows is None:
            self.rows = torch.arange(self.n, device=mask.device)
        for name, value in list(vars(self).items()):
            if isinstance(value, torch.Tensor) and value.ndim > 0 and len(value) == self.n:
                setattr(self, name, value[mask])
        self.n = len(self.rows)

    def take(self, t: torch.Tensor | None) -> torch.Tensor | None:
        """The entries of a per-sample tensor of the whole batch at these rows."""
        return t if t is None or self.rows is None else t[self.rows]


class Run:
    """One call of an engine attack on a batch: the best point of each sample, counters and random numbers.

    ``best_*`` start at the clean input; :meth:`offer` gives candidates for some rows, which replace the best
    point where ``rule`` says. ``steps`` and ``queries`` count per sample (queries start at 1: the clean
    forward pass). ``random`` gives keyed random numbers (drawn lazily: none drawn, the generator untouched).
    ``carried``: per-sample tensors that travel with the best point; ``extras``: the attack's extra results.
    """

    def __init__(self, attack: EngineAttack, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None,
                 clean_logits: torch.Tensor, generator: torch.Generator | None, rule: KeepBest = PGD_RULE) -> None:
        self.attack, self.x, self.y, self.target, self.clean_logits = attack, x, y, target, clean_logits
        self.generator = generator
        self.rule = rule
        self.best_x = x.clone()
        self.best_logits = clean_logits.clone()
        self.best_score = attack.clean_score(clean_logits, y, target)
        self.best_success = attack.is_success(x, clean_logits, y, target)
        self.carried: dict[str, torch.Tensor] = {}
        self.extras: dict[str, Any] = {}
        self.steps = torch.zeros(len(x), dtype=torch.long, device=x.device)
        self.queries = torch.ones(len(x), dtype=torch.long, device=x.device)
        self._random: KeyedRandom | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def random(self) -> KeyedRandom:
        if self._random is None:
            self._random = KeyedRandom(self.x, self.generator, self.y, self.target)
        return self._random

    def uniform(self, rows: Rows, stream: tuple[int, ...]) -> Uniform:
        """Keyed uniform numbers for ``rows`` in ``stream`` (what the norms sample from)."""
        index = rows.rows if rows.rows is not None else torch.arange(rows.n, device=self.x.device)
        return self.random.stream(index, stream)

    def open_rows(self, only_unbroken: bool) -> torch.Tensor | None:
        """The rows a new search works on: those not yet successful, or all (None)."""
        return self.unbroken_rows() if only_unbroken else None

    def unbroken_rows(self) -> torch.Tensor:
        """The indices of the samples not yet successful."""
        return (~self.best_success).nonzero().squeeze(1)

    def rows(self, index: torch.Tensor | None, target: torch.Tensor | None = None, rows_type: type[Rows] = Rows,
             **state: object) -> Rows:
        """A ``rows_type`` for ``index`` with their clean points ``x0``, labels ``y`` and ``target`` (the run's
        target unless given) and any further ``state``."""
        n = len(self.x) if index is None else len(index)
        target = self.target if target is None else target
        if index is None:
            return rows_type(index, n, x0=self.x, y=self.y, target=target, **state)
        return rows_type(index, n, x0=self.x[index], y=self.y[index],
                         target=None if target is None else target[index], **state)

    def count_queries(self, rows: Rows, amount: int = 1) -> None:
        self.queries[slice(None) if rows.rows is None else rows.rows] += amount

    def count_steps(self, rows: Rows) -> None:
        self.steps[slice(None) if rows.rows is None else rows.rows] += 1

    def offer(self, rows: Rows, x: torch.Tensor, logits: torch.Tensor, score: torch.Tensor, success: torch.Tensor,
              final: bool = False, carried: dict[str, torch.Tensor] | None = None) -> None:
        """Candidates for ``rows``; each replaces the row's best point (and ``carried``) where the rule says."""
        index = rows.rows
        old_success = self.best_success if index is None else self.best_success[index]
        old_score = self.best_score if index is None else self.best_score[index]
        better = self.rule.better(old_success, old_score, success, score, final)
        local: torch.Tensor | slice = slice(None)  # every row (no indexing)
        at: torch.Tensor | slice = local if index is None else index
        if not better.all():
            local = better.nonzero().squeeze(1)
            if len(local) == 0:
                return
            at = local if index is None else index[local]
        self.best_x[at] = x[local].to(self.best_x.dtype)
        self.best_logits[at] = logits[local].to(self.best_logits.dtype)
        self.best_score[at] = score[local].to(self.best_score.dtype)
        self.best_success[at] = success[local]
        for name, value in (carried or {}).items():
            self.carried[name][at] = value[local].to(self.carried[name].dtype)

    def result(self, extras: dict[str, Any] | None = None) -> AttackResult:
        """The result (with ``extras``, else the run's); success is checked once more at the returned points."""
        success = self.attack.is_success(self.best_x, self.best_logits, self.y, self.target)
        return AttackResult(self.best_x, success, self.steps, self.queries, self.best_logits, self.clean_logits,
                            self.target, self.extras if extras is None else extras)


class EngineAttack(Attack):
    """An attack whose call is a :class:`Run` of ``restarts`` searches; subclasses implement :meth:`search`.

    ``rule`` is the :class:`KeepBest` of the attack. Each restart works on every row, or with early stop on
    the rows not yet successful; keyed random numbers get the restart in their stream, so restarts differ.
    """

    rule: KeepBest = PGD_RULE
    restarts: int = 1

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        run = Run(self, x, y, target, clean_logits, generator, self.rule)
        self.repeat(run, self.restarts)
        return self.finish(run)

    def repeat(self, run: Run, times: int, only_unbroken: bool | None = None) -> None:
        """``times`` searches, each on the rows still open."""
        only_unbroken = self.early_stop if only_unbroken is None else only_unbroken
        for restart in range(times):
            index = run.open_rows(only_unbroken)
            if index is not None and len(index) == 0:
                return
            self.search(run, index, restart)

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        """One search on the rows ``index`` (None: all), offering its candidates to ``run``."""
        raise NotImplementedError

    def is_success(self, x: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
                   ) -> torch.Tensor:
        """Whether the points ``x`` with outputs ``logits`` succeed (default: the attack loss says so)."""
        return self.loss.success(logits, y, target)

    def clean_score(self, clean_logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """The score of the clean points, where every sample's best point starts (default: the loss)."""
        return self.loss(clean_logits, y, target)

    def finish(self, run: Run) -> AttackResult:
        """The result of a run (attacks with extras override this)."""
        return run.result()


class GradientAttack(EngineAttack):
    """Iterated gradient ascent on the attack's loss: ``steps`` steps per search, then the final iterate.

    Subclasses supply :meth:`start` and :meth:`step`. Every iterate is checked for success with the logits
    its gradient step computed (no extra forward pass); the final iterate costs one forward pass.
    """

    steps: int = 1
    eot_iter: int = 1  # forward and backward passes whose gradients each step averages
    rows_type: type[Rows] = Rows  # the class of the per-row state of a search (with the attack's own state)

    @property
    def queries_per_step(self) -> int:
        """Model evaluations per sample that one :meth:`gradient` costs (an estimator from scores spends many)."""
        return self.eot_iter

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        """The first iterate of the rows (default: the clean points); ``rows.stream`` labels the search's
        keyed random numbers."""
        return rows.x0

    def step(self, rows: Rows, grad: torch.Tensor, k: int) -> torch.Tensor:
        """The next iterate from ``rows.x`` and the gradient of the loss there (which it may overwrite)."""
        raise NotImplementedError

    def observe(self, rows: Rows, k: int, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Called after the gradient of step ``k``, before finished rows are dropped (default: nothing)."""

    def checked(self, run: Run, rows: Rows, k: int, logits: torch.Tensor, success: torch.Tensor) -> None:
        """Called at each success check, of ``rows.x`` after ``k`` steps, before finished rows are dropped."""

    def score(self, logits: torch.Tensor, loss: torch.Tensor, rows: Rows) -> torch.Tensor:
        """What ranks two failed iterates of a sample (default: the loss)."""
        return loss

    def gradient(self, rows: Rows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The logits and loss at ``rows.x`` and the gradient that :meth:`step` follows: the loss's, averaged with
        the loss over ``eot_iter`` passes (expectation over transformation, Athalye et al. 2018, for models with
        random transforms; the logits of the last pass)."""
        grads, losses = [], []
        for _ in range(self.eot_iter):
            x = rows.x.detach().requires_grad_(True)
            logits = self.predict(x, rows.y)
            loss = self.loss(logits, rows.y, rows.loss_target)
            grads.append(torch.autograd.grad(loss.sum(), x)[0])
            losses.append(loss.detach())
        if self.eot_iter == 1:
            return logits, losses[0], grads[0]
        return logits, torch.stack(losses).mean(dim=0), torch.stack(grads).mean(dim=0)

    def walk(self, rows: Rows, visit: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
             ) -> torch.Tensor:
        """The step loop, the one of every gradient attack: from ``rows.x``, ``steps`` times: the logits, the
        loss and its gradient (kept as ``rows.grad``) at the iterate, ``visit(k, logits, loss)`` (which may drop
        rows), then the next iterate. Returns the last iterate; without ``visit`` it is the lean loop of
        adversarial training (no bookkeeping, no extra forward pass)."""
        for k in range(self.steps):
            logits, loss, rows.grad = self.gradient(rows)
            with torch.no_grad():
                if visit is not None:
                    visit(k, logits.detach(), loss.detach())
                    if rows.n == 0:
                        break
                rows.x = self.step(rows, rows.grad, k)
        return rows.x.detach()

    def iterate(self, x: torch.Tensor, y: torch.Tensor, start: torch.Tensor, target: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The last iterate of :meth:`walk` from ``start`` around the clean points ``x``, without bookkeeping.
        Call it with the model in :func:`~alva.attacks.base.attack_mode`."""
        rows = self.rows_type(None, len(x), x0=x, y=y, target=target, loss_target=target, x=start, stream=(0, 0))
        return self.walk(rows)

    def search(self, run: Run, index: torch.Tensor | None, restart: int, loss_target: torch.Tensor | None = None,
               stream: int = 0) -> None:
        """One run of ``steps`` steps; ``loss_target`` (default: the run's target) is what the loss aims at,
        while success is judged against the run's target; random numbers come from stream ``(stream, restart)``."""
        rows = run.rows(index, rows_type=self.rows_type)
        rows.loss_target = rows.target if loss_target is None else rows.take(loss_target)
        rows.stream = (stream, restart)
        rows.x = self.start(run, rows)

        def visit(k: int, logits: torch.Tensor, loss: torch.Tensor) -> None:
            run.count_queries(rows, self.queries_per_step)
            success = self.is_success(rows.x, logits, rows.y, rows.target)
            run.offer(rows, rows.x, logits, self.score(logits, loss, rows), success)
            self.checked(run, rows, k, logits, success)
            self.observe(rows, k, loss, rows.grad)
            if self.early_stop and success.any():
                rows.keep(~success)
            run.count_steps(rows)

        self.walk(rows, visit)
        if rows.n == 0:
            return
        with torch.no_grad():
            logits = self.predict(rows.x, rows.y)
            run.count_queries(rows)
            loss = self.loss(logits, rows.y, rows.loss_target)
            success = self.is_success(rows.x, logits, rows.y, rows.target)
            run.offer(rows, rows.x, logits, self.score(logits, loss, rows), success, final=True)
            self.checked(run, rows, self.steps, logits, success)


class SearchAttack(EngineAttack):
    """Score-based random search: no gradient, the model's outputs only.

    Subclasses supply :meth:`start` (the first candidate per row) and :meth:`propose` (the next one from
    ``rows.x``, the current point). Each candidate costs one query; a row stops when its budget of
    ``n_queries`` (the clean query included) is spent, or, with early stop, when it succeeds.
    """

    rule = SCORE_RULE
    n_queries: int = 1
    rows_type: type[Rows] = Rows  # the class of the per-row state of a search

    def start(self, run: Run, rows: Rows) -> torch.Tensor:
        raise NotImplementedError

    def propose(self, run: Run, rows: Rows, step: int) -> torch.Tensor:
        raise NotImplementedError

    def accept(self, rows: Rows, success: torch.Tensor, objective: torch.Tensor) -> torch.Tensor:
        """Where a candidate replaces the current point: a success beats a failure, else a higher objective."""
        return (success & ~rows.success) | ((success == rows.success) & (objective > rows.objective))

    def _evaluate(self, run: Run, rows: Rows, candidate: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = self.predict(candidate, rows.y)
        run.count_queries(rows)
        return logits, self.loss(logits, rows.y, rows.target), self.is_success(candidate, logits, rows.y, rows.target)

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        rows = run.rows(torch.arange(len(run), device=run.x.device) if index is None else index,
                        rows_type=self.rows_type)
        if self.n_queries < 2 or rows.n == 0:
            return
        rows.x = self.start(run, rows)
        logits, rows.objective, rows.success = self._evaluate(run, rows, rows.x)
        run.offer(rows, rows.x, logits, rows.objective, rows.success)
        for step in range(self.n_queries - 2):
            if self.early_stop and rows.success.any():
                rows.keep(~rows.success)
            if rows.n == 0:
                return
            candidate = self.propose(run, rows, step)
            logits, objective, success = self._evaluate(run, rows, candidate)
            run.count_steps(rows)
            accept = self.accept(rows, success, objective)
            if accept.any():
                rows.x = torch.where(accept.view(-1, *[1] * (candidate.ndim - 1)), candidate, rows.x)
                rows.objective = torch.where(accept, objective, rows.objective)
                rows.success = torch.where(accept, success, rows.success)
                local = accept.nonzero().squeeze(1)
                run.offer(_subset(rows, local), candidate[local], logits[local], objective[local], success[local])


def _subset(rows: Rows, local: torch.Tensor) -> Rows:
    return Rows(local if rows.rows is None else rows.rows[local], len(local))


class Repeated(EngineAttack):
    """``attack`` run ``times`` times (restarts); each sample keeps its worst case by the attack's rule.

    With the attack's early stop, each run works only on the samples not yet successful. Keyed random
    numbers get the run's number in their stream, so each run starts elsewhere.
    ``Repeated(PGD(model, eps), 5)`` is ``PGD(model, eps, restarts=5)``.
    """

    def __init__(self, attack: EngineAttack, times: int) -> None:
        if not isinstance(attack, EngineAttack):
            raise TypeError(f"Repeated needs an engine attack, got {type(attack).__name__}")
        super().__init__(attack.model, loss=attack.loss, target=attack.target_rule, early_stop=attack.early_stop,
                         bounds=attack.bounds, seed=attack.seed)
        self.attack = attack
        self.times = positive_int("times", times)
        self.rule = attack.rule

    def predict(self, x, y):
        return self.attack.predict(x, y)

    def models_in_use(self):
        return self.attack.models_in_use()

    def run(self, x, y, target, clean_logits, generator) -> AttackResult:
        run = Run(self.attack, x, y, target, clean_logits, generator, self.rule)
        self.attack.repeat(run, self.attack.restarts * self.times)
        return self.attack.finish(run)
