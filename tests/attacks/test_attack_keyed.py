"""Keyed random numbers: a sample's key is the hash of its pixels, unchanged by its labels and its batch when its
pixels are unique in the batch; samples with the same pixels are told apart by their labels and their occurrence
among the copies with the same labels."""

from __future__ import annotations

import torch

from alva.attacks.keyed import KeyedRandom, sample_keys


def distinct_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand((n, 1, 6, 6), generator=torch.Generator().manual_seed(seed))


def test_a_sample_unique_in_its_batch_keeps_the_key_of_its_pixels():
    x = distinct_images(8)
    y, target = torch.arange(8) % 3, (torch.arange(8) + 1) % 3
    pixels_only = sample_keys(x)
    assert len(set(pixels_only.tolist())) == 8
    assert torch.equal(sample_keys(x, y, target), pixels_only)  # labels matter only for repeated pixels
    assert torch.equal(torch.cat([sample_keys(x[i:i + 1], y[i:i + 1]) for i in range(8)]), pixels_only)
    blank = torch.zeros((3, 1, 6, 6))
    with_twins = sample_keys(torch.cat([x[:4], blank, x[4:]]), torch.cat([y[:4], torch.tensor([0, 0, 1]), y[4:]]))
    assert torch.equal(torch.cat([with_twins[:4], with_twins[7:]]), pixels_only)


def test_identical_samples_get_distinct_keys_by_label_and_occurrence():
    blank = torch.zeros((6, 1, 6, 6))
    labels = torch.tensor([3, 3, 5, 3, 5, 7])
    keys = sample_keys(blank, labels)
    assert len(set(keys.tolist())) == 6
    assert (keys != sample_keys(blank[:1])).all()  # a single blank image keeps the key of its pixels


def test_copies_are_keyed_by_their_label_and_rank_whatever_the_batch():
    """The k-th copy of a blank image for class 3 gets one key whatever the other classes and the order."""
    blank = torch.zeros((5, 1, 6, 6))
    x = distinct_images(1)
    first = sample_keys(torch.cat([blank[:3], x]), torch.tensor([3, 5, 3, 1]))
    second = sample_keys(torch.cat([x, blank]), torch.tensor([1, 7, 3, 7, 3, 5]))
    assert first[[0, 2]].tolist() == second[[2, 4]].tolist()  # class 3: first and second copy
    assert first[1] == second[5]  # class 5: first copy
    assert first[3] == second[0]  # the unique image


def test_uniform_numbers_of_a_sample_do_not_depend_on_its_batch_and_twins_differ():
    x = torch.cat([distinct_images(4), torch.zeros((2, 1, 6, 6))])
    y = torch.tensor([0, 1, 2, 3, 4, 4])

    def numbers(rows: torch.Tensor) -> torch.Tensor:
        random = KeyedRandom(x[rows], torch.Generator().manual_seed(7), y[rows])
        return random.uniform(torch.arange(len(rows)), (0, 1), 50)

    full = numbers(torch.arange(6))
    part = numbers(torch.tensor([4, 2, 5, 0]))  # the two copies (rows 4 and 5) keep their order
    assert torch.equal(part, full[[4, 2, 5, 0]])
    assert not torch.equal(full[4], full[5])
    assert 0 <= full.min() and full.max() < 1


def test_random_targets_and_the_search_do_not_depend_on_the_batch(cnn_small, attack_batch):
    from alva.attacks import PGD

    x, y = attack_batch[0][:12], attack_batch[1][:12]
    attack = PGD(cnn_small, eps=0.1, steps=3, target="random", seed=3)
    whole = attack(x, y)
    order = torch.tensor([7, 2, 11, 0, 5])
    part = attack(x[order], y[order])
    assert torch.equal(whole.target[order], part.target)
    assert (whole.target != y).all()
    assert torch.equal(whole.x_adv[order], part.x_adv)
    assert len(set(whole.target.tolist())) > 1
