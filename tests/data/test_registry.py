"""alva.data.load: the MNIST sources unchanged, the spec forms, subsets, loaders and the model-fit check."""

from __future__ import annotations

import pytest
import torch

from alva.data import DataError, ImageData, ModelDataMismatch, check_model_fit, fixed_subset, make_multilabel_mnist
from alva.data.registry import SOURCES, Source, load, register, spec_forms


@pytest.fixture(scope="module")
def mnist():
    return load("mnist", "test")


def test_mnist_is_exactly_load_mnist(mnist, mnist_test):
    x, y = mnist_test
    assert torch.equal(mnist.x, x) and torch.equal(mnist.y, y)
    assert (mnist.shape, mnist.num_classes, mnist.task, len(mnist)) == ((1, 28, 28), 10, "multiclass", 10000)
    assert mnist.class_names == tuple("0123456789")
    assert repr(mnist) == ("ImageData('mnist', split='test', 10000 images of 1 x 28 x 28, 10 classes, multiclass, "
                           "in memory)")


def test_fixed_subsets_are_those_of_fixed_subset(mnist, mnist_test):
    x, y = mnist.tensors(500, seed=3)
    fx, fy = fixed_subset(*mnist_test, 500, seed=3)
    assert torch.equal(x, fx) and torch.equal(y, fy)
    assert torch.equal(mnist.tensors()[0], mnist_test[0])


def test_mnist_multilabel_is_make_multilabel_mnist():
    data = load("mnist-multilabel", "test", count=50, data_seed=2)
    x, y = make_multilabel_mnist("test", 50, seed=2)
    assert torch.equal(data.x, x) and torch.equal(data.y, y)
    assert (data.task, data.shape, data.num_classes) == ("multilabel", (1, 56, 56), 10)


def test_fingerprint_follows_the_tensors(mnist):
    assert mnist.fingerprint == load("mnist", "test").fingerprint
    assert mnist.fingerprint != load("mnist", "train").fingerprint
    assert mnist.subset(range(10)).fingerprint != mnist.fingerprint


def test_loader_gives_every_sample_once_in_batches(mnist):
    seen = [yb for _, yb in mnist.subset(range(1000)).loader(128, shuffle=True, seed=1)]
    assert [len(b) for b in seen] == [128] * 7 + [104]
    assert torch.equal(torch.cat(seen).sort().values, mnist.y[:1000].sort().values)


def test_unknown_spec_lists_every_form(tmp_path):
    with pytest.raises(DataError) as caught:
        load(str(tmp_path / "nothing-here"))
    message = str(caught.value)
    for form in ("mnist", "mnist-multilabel", "cifar10:DIR", "cifar100:DIR", "FILE.npz", "FILE.safetensors", "DIR"):
        assert form in message


def test_a_registered_source_is_loaded_by_its_spec():
    def read(spec, split, options):
        n = int(spec.split(":")[1])
        return ImageData(source=spec, split=split, shape=(1, 2, 2), class_names=("a", "b"), task="multiclass",
                         labels=torch.arange(n) % 2, x=torch.zeros(n, 1, 2, 2))

    source = register(Source("zeros:N", "N blank images", lambda s: s.startswith("zeros:"), read))
    try:
        assert len(load("zeros:6")) == 6
        assert any(line.startswith("zeros:N") for line in spec_forms())
    finally:
        SOURCES.remove(source)


def test_model_fit_errors_name_what_does_not_fit(mnist):
    mnist.check_model_fit((1, 28, 28), 10)
    check_model_fit(mnist, None, None)
    with pytest.raises(ModelDataMismatch, match="takes 3 channel"):
        mnist.check_model_fit((3, 28, 28), 10)
    with pytest.raises(ModelDataMismatch, match="takes 32 x 32 images but the images are 28 x 28"):
        mnist.check_model_fit((1, 32, 32), 10)
    with pytest.raises(ModelDataMismatch, match="100 outputs but the data has 10 classes"):
        mnist.check_model_fit((1, 28, 28), 100)


def test_subset_rejects_out_of_range_indices(mnist):
    with pytest.raises(IndexError):
        mnist.subset([0, 10000])
