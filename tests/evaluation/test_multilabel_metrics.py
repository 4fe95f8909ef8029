"""Multi-label metrics: average precision by hand, its properties, and the thresholded rates."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from alva.evaluation.multilabel import average_precision, multilabel_metrics, multilabel_summary


def test_average_precision_by_hand():
    # Ranked: pos, neg, pos, neg, pos -> precision at the positives 1/1, 2/3, 3/5.
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = torch.tensor([1, 0, 1, 0, 1])
    assert average_precision(scores, positives) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)
    # The order of the inputs does not matter, only the ranking.
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert average_precision(scores[perm], positives[perm]) == pytest.approx((1 + 2 / 3 + 3 / 5) / 3)


def test_average_precision_with_ties_takes_the_tie_at_once():
    # The two top scores tie (one positive, one negative): precision 1/2 there, then 2/3.
    scores = torch.tensor([0.9, 0.9, 0.7, 0.6])
    positives = torch.tensor([0, 1, 1, 0])
    assert average_precision(scores, positives) == pytest.approx((1 / 2 + 2 / 3) / 2)
    # Swapping the tied pair changes nothing.
    assert average_precision(scores, torch.tensor([1, 0, 1, 0])) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_average_precision_without_positives_is_nan():
    assert math.isnan(average_precision(torch.rand(5), torch.zeros(5)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=30).filter(any), st.integers(0, 2**31 - 1))
def test_perfect_ranking_gives_one_and_the_worst_ranking_its_floor(labels, seed):
    positives = torch.tensor(labels)
    n, k = len(labels), int(positives.sum())
    noise = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    perfect = positives.double() * 2 + noise  # every positive above every negative
    assert average_precision(perfect, positives) == pytest.approx(1.0)
    worst = -perfect  # every positive below every negative: precision k-th positive = i / (n - k + i)
    floor = sum(i / (n - k + i) for i in range(1, k + 1)) / k
    assert average_precision(worst, positives) == pytest.approx(floor)
    assert floor - 1e-12 <= average_precision(noise, positives) <= 1 + 1e-12


def test_metrics_by_hand():
    # Two labels, four samples; predicted present where the logit is > 0 (probability > 0.5).
    logits = torch.tensor([[3.0, -2.0], [1.0, 1.0], [-1.0, 2.0], [-3.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    m = multilabel_metrics(logits, targets)
    # label 0: predicted {0, 1}, true {0, 1, 2}: precision 1, recall 2/3; label 1: predicted {1, 2}, true {2}.
    assert m["precision"] == pytest.approx([1.0, 0.5])
    assert m["recall"] == pytest.approx([2 / 3, 1.0])
    assert m["f1"] == pytest.approx([0.8, 2 / 3])
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert m["exact_match"] == pytest.approx(2 / 4)  # samples 0 and 3
    assert m["hamming_acc"] == pytest.approx(6 / 8)
    # label 0 ranked 3, 1, -1, -3: all three positives first -> 1; label 1 ranked 2 (pos) first -> 1.
    assert m["ap"] == pytest.approx([1.0, 1.0])
    assert m["map"] == pytest.approx(1.0)
    assert multilabel_summary(logits, targets) == {k: m[k] for k in ("map", "exact_match", "macro_f1",
                                                                      "hamming_acc")}


def test_threshold_is_on_the_probability():
    logits = torch.tensor([[0.5, -0.5]])  # probabilities 0.62 and 0.38
    targets = torch.tensor([[1.0, 0.0]])
    assert multilabel_metrics(logits, targets)["exact_match"] == 1.0
    assert multilabel_metrics(logits, targets, threshold=0.7)["exact_match"] == 0.0
    assert multilabel_metrics(logits, targets, threshold=0.3)["exact_match"] == 0.0


def test_undefined_rates_are_zero_and_labels_without_positives_leave_the_map():
    logits = torch.tensor([[-5.0, 1.0], [-5.0, -1.0]])
    targets = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    m = multilabel_metrics(logits, targets)
    assert m["precision"][0] == 0.0 and m["recall"][0] == 0.0 and m["f1"][0] == 0.0
    assert math.isnan(m["ap"][0])
    assert m["map"] == pytest.approx(1.0)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="N x L"):
        multilabel_metrics(torch.zeros(3, 10), torch.zeros(3, 9))
    with pytest.raises(ValueError, match="N x L"):
        multilabel_metrics(torch.zeros(10), torch.zeros(10))
