"""Multi-label MNIST: seeded, true to its layout (labels, pixels, blank cells), and never mixing splits."""

from __future__ import annotations

import pytest
import torch

from alva.data import make_multilabel_mnist, make_multilabel_mnist_with_layout
from alva.data.multilabel import EMPTY, cell_slices, compose, sample_layout

N = 400


@pytest.fixture(scope="module")
def generated():
    """400 images from the test split, seed 3, with their layout."""
    return make_multilabel_mnist_with_layout("test", N, seed=3)


def test_shapes_dtypes_and_range(generated):
    x, y, layout = generated
    assert x.shape == (N, 1, 56, 56) and x.dtype == torch.float32
    assert y.shape == (N, 10) and y.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert set(y.unique().tolist()) <= {0.0, 1.0}
    assert layout.sources.shape == (N, 4) and layout.split == "test" and layout.seed == 3


def test_same_seed_same_tensors_other_seed_differs(generated):
    x, y, layout = generated
    x2, y2 = make_multilabel_mnist("test", N, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, y3 = make_multilabel_mnist("test", N, seed=4)
    assert not torch.equal(x, x3) and not torch.equal(y, y3)


def test_the_global_rng_is_left_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    make_multilabel_mnist("test", 10, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_one_to_four_distinct_digits_in_distinct_cells(generated):
    _, y, layout = generated
    placed = (layout.sources != EMPTY).sum(1)
    assert placed.min() == 1 and placed.max() == 4
    # Distinct classes: as many labels as digits placed.
    assert torch.equal(y.sum(1).long(), placed)
    # Every count 1..4 occurs, roughly uniformly (100 expected each).
    counts = torch.bincount(placed, minlength=5)[1:]
    assert counts.min() > 60


def test_labels_pixels_and_blank_cells_match_the_layout(generated, mnist_test):
    x, y, layout = generated
    images, labels = mnist_test
    for i in range(N):
        expected = torch.zeros(10)
        for cell in range(4):
            rows, cols = cell_slices(cell)
            source = int(layout.sources[i, cell])
            if source == EMPTY:
                assert not x[i, :, rows, cols].any()
            else:
                assert torch.equal(x[i, :, rows, cols], images[source])
                assert y[i, labels[source]] == 1
                expected[labels[source]] = 1
        assert torch.equal(y[i], expected)


def test_max_digits_limits_the_count():
    _, y, layout = make_multilabel_mnist_with_layout("test", 200, seed=0, max_digits=2)
    assert set(y.sum(1).long().tolist()) == {1, 2}
    assert ((layout.sources != EMPTY).sum(1) <= 2).all()


def _cells(x: torch.Tensor, layout) -> list[bytes]:
    """The raw bytes of every filled cell of the generated images ``x``."""
    out = []
    for i, cell in (layout.sources != EMPTY).nonzero().tolist():
        rows, cols = cell_slices(cell)
        out.append(x[i, :, rows, cols].numpy().tobytes())
    return out


def test_train_and_test_are_never_mixed(generated, mnist_train, mnist_test):
    test_digits = {image.numpy().tobytes() for image in mnist_test[0]}
    x, _, layout = make_multilabel_mnist_with_layout("train", 300, seed=5)
    assert layout.split == "train"
    rebuilt, _ = compose(*mnist_train, layout.sources)
    assert torch.equal(rebuilt, x)
    assert not any(cell in test_digits for cell in _cells(x, layout))
    x_test, _, test_layout = generated
    assert all(cell in test_digits for cell in _cells(x_test, test_layout))


def test_layout_only_uses_the_labels_given():
    labels = torch.arange(10).repeat(3)  # 30 sources, 3 per class
    layout = sample_layout(labels, 500, seed=0)
    used = layout.sources[layout.sources != EMPTY]
    assert used.min() >= 0 and used.max() < 30
    assert len(used.unique()) == 30  # every source gets drawn


@pytest.mark.parametrize("bad, match", [({"n": 0}, "n must"), ({"max_digits": 5}, "max_digits"),
                                        ({"max_digits": 0}, "max_digits")])
def test_bad_arguments_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        sample_layout(torch.arange(10), **{"n": 5, **bad})


def test_missing_classes_are_refused():
    with pytest.raises(ValueError, match="classes"):
        sample_layout(torch.tensor([0, 1, 2]), 5)


def test_unknown_split_is_refused():
    with pytest.raises(ValueError, match="split"):
        make_multilabel_mnist("validation", 5)
