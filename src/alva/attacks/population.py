"""Population search on the engine: a score-based search that keeps a population of candidates per sample and
evolves it generation by generation (differential evolution, Storn and Price 1997).

The attack supplies the first population (:meth:`PopulationSearch.start`), the trials of a generation
(:meth:`PopulationSearch.propose`), the outputs of candidates (:meth:`PopulationSearch.candidate_logits`) and
the image of a candidate (:meth:`PopulationSearch.images`); the engine (:mod:`alva.attacks.engine`) owns the
rest: the rows still searched, the query budget, objective and success through the attack loss, early stop,
the choice of each sample's result and the counters.
"""

from __future__ import annotations

import math

import torch

from alva.attacks.engine import LAST_ITERATE, EngineAttack, Rows, Run

__all__ = ["PopulationRows", "PopulationSearch"]


class PopulationRows(Rows):
    """The per-row state of a population search: the population with its objectives, outputs and successes
    (``rows.n x popsize [x ...]``), and the trials of the current generation with theirs."""

    population: torch.Tensor
    logits: torch.Tensor
    trials: torch.Tensor
    t_objective: torch.Tensor
    t_logits: torch.Tensor
    t_success: torch.Tensor


class PopulationSearch(EngineAttack):
    """Score-based search with ``popsize`` candidates per sample, evolved for up to ``generations`` generations.

    Each candidate costs one query of its sample: the first population ``popsize``, each generation one trial
    for each of the first ``members`` members (``popsize``, except that the last generation is cut short so
    that a sample never spends more than :attr:`budget` queries, the clean one included). A trial replaces
    its member where :meth:`accept` says (default: an objective as high or higher, as Storn and Price do).
    With early stop a sample stops at the first evaluation in which one of its candidates succeeds.

    A sample's result is the candidate where it stopped: the successful candidate of highest objective of
    the evaluation that broke it, else the best member of its final population (a successful one first);
    the chosen candidate itself is kept in the run's ``carried["candidate"]`` when the attack sets it.
    ``steps`` counts the generations.
    """

    rule = LAST_ITERATE
    popsize: int = 4
    generations: int = 0

    @property
    def budget(self) -> int:
        """Most queries per sample: the clean forward pass and every candidate evaluated."""
        return 1 + self.popsize * (1 + self.generations)

    def start(self, run: Run, rows: PopulationRows) -> torch.Tensor:
        """The first population: ``rows.n x popsize x ...`` candidates (keyed random numbers:
        ``run.uniform(rows, rows.stream)``)."""
        raise NotImplementedError

    def propose(self, run: Run, rows: PopulationRows, members: int) -> torch.Tensor:
        """Trials for the first ``members`` members of ``rows.population`` (objectives: ``rows.objective``); the
        keyed random numbers of the generation are those of ``rows.stream``."""
        raise NotImplementedError

    def candidate_logits(self, rows: PopulationRows, candidates: torch.Tensor) -> torch.Tensor:
        """The outputs of ``candidates`` (``rows.n x m x ...``), row by row: ``(rows.n * m) x outputs``."""
        raise NotImplementedError

    def images(self, rows: PopulationRows, local: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """The images of ``candidates`` (one per entry of ``local``, the rows they belong to)."""
        raise NotImplementedError

    def accept(self, rows: PopulationRows, objective: torch.Tensor, members: int) -> torch.Tensor:
        """Where a trial replaces its member (``rows.n x members``)."""
        return objective >= rows.objective[:, :members]

    def search(self, run: Run, index: torch.Tensor | None, restart: int) -> None:
        rows = run.rows(index, rows_type=PopulationRows)
        assert isinstance(rows, PopulationRows)
        if rows.n == 0:
            return
        rows.stream = (restart, 0)
        rows.population = self.start(run, rows)
        rows.objective, rows.logits, rows.success = self._evaluate(run, rows, rows.population)
        left = self.budget - 1 - self.popsize
        if self.early_stop:
            self._stop_broken(run, rows, rows.population, rows.objective, rows.logits, rows.success)
        for generation in range(1, self.generations + 1):
            members = min(self.popsize, left)
            if members <= 0 or rows.n == 0:
                break
            rows.stream = (restart, generation)
            rows.trials = self.propose(run, rows, members)
            rows.t_objective, rows.t_logits, rows.t_success = self._evaluate(run, rows, rows.trials)
            run.count_steps(rows)
            left -= members
            if self.early_stop:  # only the trials can succeed: the population was checked before
                self._stop_broken(run, rows, rows.trials, rows.t_objective, rows.t_logits, rows.t_success)
            better = self.accept(rows, rows.t_objective, members)
            for kept, new in ((rows.population, rows.trials), (rows.objective, rows.t_objective),
                              (rows.logits, rows.t_logits), (rows.success, rows.t_success)):
                kept[:, :members][better] = new[better]
        if rows.n:
            self._offer_best(run, rows, None, rows.population, rows.objective, rows.logits, rows.success)

    def _evaluate(self, run: Run, rows: PopulationRows, candidates: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Objective, logits and success (``rows.n x m [x outputs]``) of the candidates: one query each."""
        n, m = candidates.shape[:2]
        with torch.no_grad():
            logits = self.candidate_logits(rows, candidates)
        run.count_queries(rows, m)
        y = rows.y.repeat_interleave(m)
        target = None if rows.target is None else rows.target.repeat_interleave(m)
        objective = self.loss(logits, y, target).view(n, m)
        return objective, logits.view(n, m, -1), self.loss.success(logits, y, target).view(n, m)

    def _stop_broken(self, run: Run, rows: PopulationRows, candidates: torch.Tensor, objective: torch.Tensor,
                     logits: torch.Tensor, success: torch.Tensor) -> None:
        """Offer the result of the rows with a successful candidate and drop them."""
        broken = success.any(dim=1)
        if broken.any():
            self._offer_best(run, rows, broken, candidates, objective, logits, success)
            rows.keep(~broken)

    def _offer_best(self, run: Run, rows: PopulationRows, which: torch.Tensor | None, candidates: torch.Tensor,
                    objective: torch.Tensor, logits: torch.Tensor, success: torch.Tensor) -> None:
        """For the rows ``which`` (None: all): the successful candidate of highest objective, else the highest."""
        local = torch.arange(rows.n, device=objective.device) if which is None else which.nonzero().squeeze(1)
        ok, objective = success[local], objective[local]
        best_ok = torch.where(ok, objective, torch.full_like(objective, -math.inf)).argmax(dim=1)
        pick = torch.where(ok.any(dim=1), best_ok, objective.argmax(dim=1))
        chosen = candidates[local, pick]
        at = Rows(local if rows.rows is None else rows.rows[local], len(local))
        carried = {"candidate": chosen} if "candidate" in run.carried else None
        run.offer(at, self.images(rows, local, chosen), logits[local, pick], objective.gather(1, pick[:, None])[:, 0],
                  ok.gather(1, pick[:, None]).squeeze(1), final=True, carried=carried)
