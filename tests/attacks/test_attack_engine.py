"""The attack engine (alva.attacks.engine): the best-point rule, dropping finished rows, restarts as a wrapper,
and a new attack written on it in a few lines (MI-FGSM) that gets the bookkeeping for free."""

from __future__ import annotations

import torch

from alva.attacks import PGD, GradientAttack, KeepBest, Repeated, Rows, SearchAttack
from alva.attacks.errors import finite, positive_int
from alva.attacks.norms import get_norm, per_sample


class MomentumFGSM(GradientAttack):
    """MI-FGSM (Dong et al. 2018, "Boosting Adversarial Attacks with Momentum"): sign steps of ``eps / steps``
    along the accumulated L1-normalised gradient, projected onto the L-inf ball."""

    def __init__(self, model, eps: float = 0.3, steps: int = 10, decay: float = 1.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        self.eps, self.steps, self.decay = finite("eps", eps), positive_int("steps", steps), finite("decay", decay)
        self.norm = get_norm("linf")

    def start(self, run, rows):
        rows.momentum = torch.zeros_like(rows.x0)  # per-row state: the engine drops finished rows from it
        return rows.x0

    def step(self, rows, grad, k):
        l1 = grad.abs().flatten(1).sum(1).clamp_min(1e-12)
        rows.momentum = self.decay * rows.momentum + grad / per_sample(l1, grad)
        alpha = self.eps / self.steps
        return self.norm.ascend(rows.x, rows.momentum.clone(), rows.x0, alpha, self.eps).clamp_(*self.bounds)


class RandomSigns(SearchAttack):
    """Random search on the corners of the L-inf ball: start at x + eps * random signs; each query flips the
    signs of about 5% of the pixels and is kept when the margin rises (a score-based black-box attack)."""

    def __init__(self, model, eps: float = 0.3, n_queries: int = 200, *, loss="margin", early_stop=True, **kwargs):
        super().__init__(model, loss=loss, early_stop=early_stop, **kwargs)
        self.eps, self.n_queries = finite("eps", eps), positive_int("n_queries", n_queries)

    def start(self, run, rows):
        u = run.uniform(rows, (0,))(rows.x0[0].numel()).view_as(rows.x0)  # keyed per sample
        return (rows.x0 + self.eps * torch.where(u < 0.5, -1.0, 1.0)).clamp_(*self.bounds)

    def propose(self, run, rows, step):
        u = run.uniform(rows, (1, step))(rows.x0[0].numel()).view_as(rows.x0)
        sign = torch.where(rows.x >= rows.x0, 1.0, -1.0) * torch.where(u < 0.05, -1.0, 1.0)
        return (rows.x0 + self.eps * sign).clamp_(*self.bounds)


def test_a_new_attack_gets_early_stop_restarts_and_counters_from_the_engine(cnn_small, attack_batch):
    x, y = attack_batch
    full = MomentumFGSM(cnn_small, eps=0.2, steps=10)(x, y)
    stopped = MomentumFGSM(cnn_small, eps=0.2, steps=10, early_stop=True)(x, y)
    assert full.success.float().mean() > 0.5
    assert (full.x_adv - x).abs().amax() <= 0.2 + 1e-6 and full.x_adv.min() >= 0 and full.x_adv.max() <= 1
    assert torch.equal(full.success, cnn_small(full.x_adv).argmax(1) != y)
    assert (full.steps == 10).all() and (full.queries == 12).all()  # clean + 10 steps + the final iterate
    assert torch.equal(stopped.success, full.success | stopped.success) and stopped.steps.sum() < full.steps.sum()
    assert (stopped.queries[stopped.success] <= stopped.steps[stopped.success] + 2).all()


def test_repeated_is_restarts(cnn_small, attack_batch):
    x, y = attack_batch[0][:40], attack_batch[1][:40]
    wrapped = Repeated(PGD(cnn_small, eps=0.1, steps=5, seed=3), 3)(x, y)
    built_in = PGD(cnn_small, eps=0.1, steps=5, restarts=3, seed=3)(x, y)
    for field in ("x_adv", "success", "steps", "queries"):
        assert torch.equal(getattr(wrapped, field), getattr(built_in, field)), field
    once = PGD(cnn_small, eps=0.1, steps=5, seed=3)(x, y)
    assert (wrapped.success | ~once.success).all() and (wrapped.queries == 3 * 6 + 1).all()


def test_the_best_point_rules():
    old_success = torch.tensor([False, False, True, True])
    old_score = torch.tensor([1.0, 1.0, 1.0, 1.0])
    success = torch.tensor([False, True, True, False])
    score = torch.tensor([2.0, 0.0, 5.0, 9.0])
    pgd = KeepBest("first", final_success_wins=True)
    assert pgd.better(old_success, old_score, success, score, final=False).tolist() == [True, True, False, False]
    assert pgd.better(old_success, old_score, success, score, final=True).tolist() == [True, True, True, False]
    higher = KeepBest("higher", final_success_wins=False)
    assert higher.better(old_success, old_score, success, score, final=True).tolist() == [True, True, True, False]
    assert KeepBest("latest").better(old_success, old_score, success, score, final=False).all()


def test_rows_keep_drops_finished_rows_from_every_part_of_the_state():
    rows = Rows(None, 4, x0=torch.arange(4.0), y=torch.tensor([0, 1, 2, 3]), target=None, stream=(0, 1))
    rows.momentum = torch.ones(4, 2)
    rows.keep(torch.tensor([True, False, True, False]))
    assert rows.n == 2 and rows.rows.tolist() == [0, 2] and rows.y.tolist() == [0, 2]
    assert rows.momentum.shape == (2, 2) and rows.target is None and rows.stream == (0, 1)
    assert rows.take(torch.tensor([10, 11, 12, 13])).tolist() == [10, 12]


def test_a_new_search_attack_spends_its_query_budget_and_repeats(cnn_small, attack_batch):
    x, y = attack_batch[0][:60], attack_batch[1][:60]
    result = RandomSigns(cnn_small, eps=0.3, n_queries=50, seed=1)(x, y)
    assert (result.queries <= 50).all() and (result.x_adv - x).abs().amax() <= 0.3 + 1e-6
    assert result.success.float().mean() > (cnn_small(x).argmax(1) != y).float().mean()
    assert torch.equal(result.success, cnn_small(result.x_adv).argmax(1) != y)
    assert torch.equal(RandomSigns(cnn_small, eps=0.3, n_queries=50, seed=1)(x, y).x_adv, result.x_adv)
