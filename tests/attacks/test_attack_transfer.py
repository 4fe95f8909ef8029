"""Transfer attacks from a substitute: exact query counts, budgets that hold, bounds that hold."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from alva.attacks import MIFGSM, PGD, AttackInputError, EnsembleModel
from alva.attacks.transfer import QueryBudgetExceeded, QueryCounter, TransferAttack
from alva.cli.main import main
from alva.training.loop import TrainSettings
from alva.training.substitute import train_substitute

EPS = 0.3
ONE_EPOCH = TrainSettings(epochs=1, batch_size=128, seed=1)


class Spy(nn.Module):
    """Counts the images the wrapped model sees, independently of the code under test, and records whether a
    gradient was ever taken through it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.seen, self.grad_calls = model, 0, 0

    def forward(self, x):
        self.seen += len(x)
        self.grad_calls += int(torch.is_grad_enabled() and x.requires_grad)
        return self.model(x)


@pytest.fixture(scope="module")
def substitute(train_subset, cnn_small):
    """An MLP substitute trained on 1000 images labelled by the target (1000 queries)."""
    model, queries = train_substitute(cnn_small, train_subset, mode="query-labels", query_budget=1000,
                                      settings=TrainSettings(epochs=2, batch_size=64, seed=1))
    assert queries == 1000
    return model


def test_query_counter_counts_and_refuses_past_the_budget(cnn_small, attack_batch):
    x, _ = attack_batch
    counter = QueryCounter(cnn_small, budget=10)
    with torch.no_grad():
        counter(x[:6])
        with pytest.raises(QueryBudgetExceeded):
            counter(x[:5])
        assert counter.count == 6 and counter.left == 4
        counter(x[:4])
    assert counter.count == 10 and counter.left == 0


@pytest.mark.parametrize("budget, rounds", [(300, 0), (301, 2), (5000, 0)])
def test_query_labels_spend_exactly_what_they_report_and_never_exceed_the_budget(train_subset, cnn_small,
                                                                                   budget, rounds):
    spy = Spy(cnn_small)
    model, queries = train_substitute(spy, train_subset, mode="query-labels", query_budget=budget,
                                      jacobian_rounds=rounds, settings=ONE_EPOCH)
    assert queries == spy.seen <= budget
    if rounds == 0:
        assert queries == min(budget, len(train_subset[0]))  # one query per labelled image
    else:
        assert queries > budget // 2  # the augmented points were labelled too
    assert spy.grad_calls == 0
    assert isinstance(model, nn.Module)


def test_same_data_substitute_needs_no_target_and_learns(train_subset, test_subset):
    model, queries = train_substitute(None, train_subset, mode="same-data", settings=ONE_EPOCH)
    assert queries == 0
    x, y = test_subset
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.8


def test_transfer_counts_two_target_queries_per_sample_and_respects_the_ball(substitute, cnn_small, attack_batch):
    x, y = attack_batch
    spy = Spy(cnn_small)
    attack = TransferAttack(spy, substitute, lambda m: PGD(m, eps=EPS, steps=10, seed=0), seed=0)
    r = attack(x, y)
    assert spy.grad_calls == 0  # black-box: the target is only queried
    assert (r.queries == 2).all() and int(r.queries.sum()) == spy.seen == 2 * len(x)
    assert (r.x_adv - x).abs().amax() <= EPS + 1e-6
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(r.success, cnn_small(r.x_adv).argmax(1) != y)
    assert r.extras["substitute_success"].float().mean() > 0.9
    assert r.success_rate > 0.4  # a 1000-query MLP substitute transfers to cnn-small


def test_targeted_transfer_aims_at_the_target_class(substitute, cnn_small, attack_batch):
    x, y = attack_batch
    target = (y + 1) % 10
    r = TransferAttack(cnn_small, substitute, lambda m: PGD(m, eps=EPS, steps=10, seed=0))(x, y, target)
    assert torch.equal(r.target, target)
    assert torch.equal(r.success, r.adv_logits.argmax(1) == target)
    assert (r.extras["substitute_logits"].argmax(1) == target).float().mean() > 0.8


def test_transfer_refuses_bad_settings(substitute, cnn_small, train_subset):
    with pytest.raises(AttackInputError, match="target itself"):
        TransferAttack(cnn_small, cnn_small)
    with pytest.raises(AttackInputError, match="on the substitute"):
        TransferAttack(cnn_small, substitute, lambda m: PGD(cnn_small))
    with pytest.raises(AttackInputError, match="bounds"):
        TransferAttack(cnn_small, substitute, lambda m: PGD(m, bounds=(-1.0, 1.0)))
    with pytest.raises(ValueError, match="query_budget"):
        train_substitute(cnn_small, train_subset, mode="query-labels")
    with pytest.raises(ValueError, match="needs the target"):
        train_substitute(None, train_subset, mode="query-labels", query_budget=10)
    with pytest.raises(ValueError, match="unknown substitute mode"):
        train_substitute(cnn_small, train_subset, mode="steal")


def test_transfer_command_writes_exact_query_counts(tmp_path):
    out = tmp_path / "transfer"
    code = main(["transfer", "--target", "mnist/cnn-small", "--substitute-mode", "query-labels", "--queries", "300",
                 "--epochs", "1", "--steps", "5", "--n", "50", "--no-progress", "--out", str(out)])
    assert code == 0
    (row,) = json.loads((out / "summary.json").read_text())["results"]
    assert row["training_queries"] == 300 and row["attack_queries"] == 100
    assert row["max_linf"] <= EPS + 1e-6 and 0 <= row["transfer_success"] <= 1
    assert (out / "transfer.png").stat().st_size > 1000


def test_substitute_needs_images():
    with pytest.raises(ValueError, match="N x C x H x W"):
        train_substitute(None, (torch.rand(8, 784), torch.zeros(8, dtype=torch.long)))


@pytest.fixture(scope="module")
def second_substitute(train_subset):
    """An MLP substitute trained on the same data with another seed (no query)."""
    model, _ = train_substitute(None, train_subset, mode="same-data", seed=2,
                                settings=TrainSettings(epochs=1, batch_size=64, seed=2))
    return model


@pytest.mark.parametrize("mode", ["logits", "loss"])
def test_an_ensemble_of_substitutes_with_a_family_attack_counts_two_target_queries(substitute, second_substitute,
                                                                                   cnn_small, attack_batch, mode):
    x, y = attack_batch
    spy = Spy(cnn_small)
    attack = TransferAttack(spy, [substitute, second_substitute],
                            lambda m: MIFGSM(m, eps=EPS, diversity_prob=0.5, kernel_size=3, seed=0), ensemble=mode)
    assert isinstance(attack.substitute, EnsembleModel) and attack.substitute.mode == mode
    r = attack(x, y)
    assert spy.grad_calls == 0 and (r.queries == 2).all() and spy.seen == 2 * len(x)
    assert (r.x_adv - x).abs().amax() <= EPS + 1e-6 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(r.success, cnn_small(r.x_adv).argmax(1) != y)
        both_fooled = (substitute(r.x_adv).argmax(1) != y) & (second_substitute(r.x_adv).argmax(1) != y)
    assert both_fooled.float().mean() > 0.8  # the ensemble's images fool each member
    assert r.success_rate > 0.4
    with pytest.raises(AttackInputError, match="target itself"):
        TransferAttack(cnn_small, [substitute, cnn_small])


def test_transfer_command_runs_a_family_attack_on_an_ensemble(tmp_path):
    out = tmp_path / "transfer"
    code = main(["transfer", "--target", "mnist/cnn-small", "--substitute-mode", "query-labels", "--queries", "300",
                 "--epochs", "1", "--attack", "mi-fgsm", "--diversity-prob", "0.5", "--substitutes", "2",
                 "--ensemble", "loss", "--n", "50", "--no-progress", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["results"]
    assert row["training_queries"] == 600 and row["attack_queries"] == 100 and row["substitutes"] == 2
    assert summary["settings"]["steps"] == 10 and row["max_linf"] <= EPS + 1e-6
    assert row["white_box_success_on_substitute"] > 0.9


def test_transfer_command_refuses_family_options_for_pgd(tmp_path, capsys):
    out = tmp_path / "refused"
    assert main(["transfer", "--target", "mnist/cnn-small", "--attack", "pgd", "--decay", "1.0", "--no-progress",
                 "--out", str(out)]) == 2
    assert "FGSM family" in capsys.readouterr().err
    assert not out.exists()
