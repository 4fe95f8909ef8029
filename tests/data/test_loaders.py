"""make_loader (seeded batches) and fixed_subset (the same evaluation images every time)."""

from __future__ import annotations

import pytest
import torch

from alva.data import epoch_generator, fixed_subset, make_loader


def _order(n: int, batch_size: int = 32, **kwargs) -> tuple[torch.Tensor, list[int]]:
    """The order in which a loader over ``arange(n)`` yields samples, and its batch sizes.

    Also checks that x and y stay paired.
    """
    x = torch.arange(n, dtype=torch.float32).view(n, 1)
    y = torch.arange(n)
    seen, sizes = [], []
    for xb, yb in make_loader(x, y, batch_size, **kwargs):
        assert torch.equal(xb[:, 0].long(), yb)
        seen.append(yb)
        sizes.append(len(yb))
    return torch.cat(seen), sizes


def test_same_seed_and_epoch_give_the_same_order():
    a, _ = _order(500, seed=3, epoch=2)
    b, _ = _order(500, seed=3, epoch=2)
    assert torch.equal(a, b)


def test_global_rng_does_not_change_the_order():
    torch.manual_seed(1)
    a, _ = _order(500, seed=3, epoch=2)
    torch.manual_seed(2)
    torch.rand(10)
    b, _ = _order(500, seed=3, epoch=2)
    assert torch.equal(a, b)


def test_different_epoch_or_seed_gives_a_different_order():
    base, _ = _order(500, seed=3, epoch=2)
    assert not torch.equal(base, _order(500, seed=3, epoch=3)[0])
    assert not torch.equal(base, _order(500, seed=4, epoch=2)[0])
    assert not torch.equal(base, torch.arange(500))  # it is shuffled at all


@pytest.mark.parametrize("n, batch_size", [(500, 32), (512, 64), (7, 10), (1, 1)])
def test_every_sample_exactly_once(n, batch_size):
    order, sizes = _order(n, batch_size, seed=0, epoch=5)
    assert torch.equal(torch.sort(order).values, torch.arange(n))
    assert sizes[:-1] == [batch_size] * (len(sizes) - 1)
    assert 0 < sizes[-1] <= batch_size


def test_drop_last_drops_the_short_batch():
    order, sizes = _order(100, 32, seed=0, drop_last=True)
    assert sizes == [32, 32, 32]
    assert len(set(order.tolist())) == 96


def test_no_shuffle_keeps_the_order():
    order, _ = _order(100, 32, shuffle=False, seed=9, epoch=9)
    assert torch.equal(order, torch.arange(100))


def test_loader_checks_its_arguments():
    x, y = torch.zeros(10, 1), torch.zeros(9, dtype=torch.long)
    with pytest.raises(ValueError, match="10"):
        make_loader(x, y, 4)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(x, torch.zeros(10, dtype=torch.long), 0)


def test_epoch_generator_depends_on_seed_and_epoch_only():
    draw = [torch.rand(4, generator=epoch_generator(s, e)) for s, e in [(0, 0), (0, 0), (0, 1), (1, 0)]]
    assert torch.equal(draw[0], draw[1])
    assert not torch.equal(draw[0], draw[2]) and not torch.equal(draw[0], draw[3])


def _indices(y: torch.Tensor, n: int, **kwargs) -> torch.Tensor:
    """The indices fixed_subset picks, found by passing the indices as the data."""
    chosen, labels = fixed_subset(torch.arange(len(y)), y, n, **kwargs)
    assert torch.equal(labels, y[chosen])
    return chosen


def test_fixed_subset_is_deterministic_and_returns_real_samples(mnist_test):
    x, y = mnist_test
    xa, ya = fixed_subset(x, y, 300, seed=7)
    xb, yb = fixed_subset(x, y, 300, seed=7)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    idx = _indices(y, 300, seed=7)
    assert torch.equal(xa, x[idx]) and torch.equal(ya, y[idx])
    assert not torch.equal(idx, _indices(y, 300, seed=8))


@pytest.mark.parametrize("n", [10, 1000, 1005, 2357])
def test_fixed_subset_is_stratified_without_duplicates(mnist_test, n):
    y = mnist_test[1]
    idx = _indices(y, n, seed=0)
    assert len(idx) == n
    assert len(torch.unique(idx)) == n
    assert torch.equal(idx, torch.sort(idx).values)  # sorted by original index
    counts = torch.bincount(y[idx], minlength=10)
    assert counts.sum().item() == n
    assert counts.max().item() - counts.min().item() <= 1


def test_fixed_subset_of_imbalanced_classes_takes_all_of_a_small_class():
    y = torch.tensor([0] * 3 + [1] * 50 + [2] * 40)
    idx = _indices(y, 30, seed=1)
    counts = torch.bincount(y[idx], minlength=3).tolist()
    # As equal as n allows: all 3 of class 0, the other 27 split 13/14 between classes 1 and 2.
    assert counts[0] == 3 and sorted(counts[1:]) == [13, 14]
    assert len(torch.unique(idx)) == 30


def test_fixed_subset_smaller_is_contained_in_larger(mnist_test):
    y = mnist_test[1]
    small = set(_indices(y, 200, seed=4).tolist())
    large = set(_indices(y, 1000, seed=4).tolist())
    assert small <= large


def test_fixed_subset_unstratified(mnist_test):
    y = mnist_test[1]
    idx = _indices(y, 500, seed=2, stratified=False)
    assert len(torch.unique(idx)) == 500
    assert torch.equal(idx, _indices(y, 500, seed=2, stratified=False))


def test_fixed_subset_of_everything_is_everything(mnist_test):
    y = mnist_test[1]
    assert torch.equal(_indices(y, len(y), seed=3), torch.arange(len(y)))


@pytest.mark.parametrize("n", [0, -1, 10001])
def test_fixed_subset_n_out_of_range_raises(mnist_test, n):
    with pytest.raises(ValueError, match="n must be"):
        fixed_subset(*mnist_test, n)
