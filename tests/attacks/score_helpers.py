"""Helpers shared by the tests of the score-based attacks (imported as ``from score_helpers import ...``): a model
that counts its queries per sample, the checks of a run's query counts, and a tiny model on 3 x 8 x 8 images."""

from __future__ import annotations

import torch
from torch import nn


class Counting(nn.Module):
    """Wraps a model; attributes every queried row to the clean sample nearest to it (L-inf, which must be within
    ``reach``) and keeps, per sample, the number of queries, whether the last one was misclassified and the
    queries after one that was. Records whether any call needed a gradient (a score-based attack never may)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, reach: float) -> None:
        super().__init__()
        self.model, self.x, self.y, self.reach = model, x, y, reach
        self.counts = torch.zeros(len(x), dtype=torch.long)
        self.last_wrong = torch.zeros(len(x), dtype=torch.bool)
        self.after_success = torch.zeros(len(x), dtype=torch.long)
        self.grad_calls = 0

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        self.grad_calls += int(torch.is_grad_enabled() and q.requires_grad)
        out = self.model(q)
        d = (q.reshape(len(q), 1, -1) - self.x.reshape(1, len(self.x), -1)).abs().amax(dim=2)
        owner = d.argmin(dim=1)
        assert (d.gather(1, owner[:, None]) <= self.reach + 1e-5).all()
        wrong = out.argmax(1) != self.y[owner]
        for row, i in enumerate(owner.tolist()):
            self.after_success[i] += int(self.last_wrong[i])
            self.counts[i] += 1
            self.last_wrong[i] = wrong[row]
        return out


def far_apart(x: torch.Tensor, reach: float) -> bool:
    """Whether every two samples of ``x`` are more than ``2 * reach`` apart (L-inf): then :class:`Counting`
    attributes each query to its sample without doubt."""
    d = (x.reshape(len(x), 1, -1) - x.reshape(1, len(x), -1)).abs().amax(dim=2)
    return bool((d + torch.eye(len(x)) * 1e9 > 2 * reach).all())


def check_exact_counts(result, counter: Counting, budget: int, probes: bool = False) -> None:
    """The result's query counts are the model's, within the budget; no gradient was asked for; with early stop
    a sample's last query is the one that broke it, and (unless the attack also ``probes`` points around its
    iterate to estimate a gradient, which may be misclassified on the way) none follows a misclassified one."""
    assert torch.equal(result.queries, counter.counts)
    assert (result.queries <= budget).all()
    assert counter.grad_calls == 0
    assert probes or (counter.after_success == 0).all()
    assert torch.equal(result.success, counter.last_wrong)


def tiny_model(seed: int = 0) -> nn.Module:
    """A small random classifier of 3 x 8 x 8 images into 5 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 5)).eval()


def flat_model(seed: int = 0) -> nn.Module:
    """A small random classifier of flat vectors of 20 features into 4 classes."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
