"""create() and the Normalized wrapper."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alva.models import ARCHITECTURES, MNIST_MEAN, MNIST_STD, Normalized, create

NAMES = ["softmax", "mlp", "maxout", "cnn-small", "cnn-wide", "cnn-large", "cnn", "cnn-gmp"]


def test_the_documented_architectures_exist():
    assert set(NAMES) <= set(ARCHITECTURES)


@pytest.mark.parametrize("name", NAMES)
def test_create_gives_logits_per_sample(name, test_subset):
    torch.manual_seed(0)
    model = create(name).eval()
    x = test_subset[0][:5]
    logits = model(x)
    assert logits.shape == (5, 10)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    # One sample at a time gives the same logits as in the batch (no mixing across the batch).
    torch.testing.assert_close(model(x[2:3]), logits[2:3], rtol=1e-5, atol=1e-5)
    # Attacks need the input gradient.
    x = x.clone().requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_create_with_other_class_count_and_spec(name):
    model = create(name, num_classes=3)
    assert model(torch.rand(4, 1, 28, 28)).shape == (4, 3)
    assert model.spec == {"architecture": name, "num_classes": 3, "in_shape": [1, 28, 28]}


def test_create_is_seeded_by_the_global_rng():
    torch.manual_seed(5)
    a = create("cnn-small")
    torch.manual_seed(5)
    b = create("cnn-small")
    torch.manual_seed(6)
    c = create("cnn-small")
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.state_dict()["net.0.weight"], c.state_dict()["net.0.weight"])


def test_unknown_architecture_raises_value_error():
    with pytest.raises(ValueError, match="resnet"):
        create("resnet")


def test_default_normalisation_per_architecture():
    softmax = create("softmax")
    assert softmax.mean.flatten().tolist() == [0.0] and softmax.std.flatten().tolist() == [1.0]
    cnn = create("cnn-small")
    torch.testing.assert_close(cnn.mean.flatten(), torch.tensor(MNIST_MEAN))
    torch.testing.assert_close(cnn.std.flatten(), torch.tensor(MNIST_STD))


def test_normalized_model_applies_its_statistics(test_subset):
    torch.manual_seed(0)
    model = create("cnn-small").eval()
    x = test_subset[0][:8]
    manual = model.net((x - MNIST_MEAN[0]) / MNIST_STD[0])
    torch.testing.assert_close(model(x), manual, rtol=1e-5, atol=1e-5)


def test_normalized_is_per_channel():
    mean, std = (0.1, 0.5, 0.9), (0.5, 0.25, 2.0)
    wrapper = Normalized(nn.Identity(), mean, std)
    x = torch.rand(2, 3, 4, 4)
    expected = torch.stack([(x[:, c] - mean[c]) / std[c] for c in range(3)], dim=1)
    torch.testing.assert_close(wrapper(x), expected)
    # The statistics are buffers: they are saved with the weights.
    assert {"mean", "std"} <= set(wrapper.state_dict())


def test_normalized_rejects_bad_statistics():
    with pytest.raises(ValueError, match="channels"):
        Normalized(nn.Identity(), (0.1, 0.2), (0.3,))
    with pytest.raises(ValueError, match="positive"):
        Normalized(nn.Identity(), (0.1,), (0.0,))


def test_maxout_dropout_only_in_training_mode():
    torch.manual_seed(0)
    model = create("maxout")
    x = torch.rand(16, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_normalized_rejects_statistics_that_are_not_finite():
    with pytest.raises(ValueError, match="finite"):
        Normalized(nn.Identity(), (float("nan"),), (1.0,))
    with pytest.raises(ValueError, match="finite"):
        Normalized(nn.Identity(), (0.0,), (float("inf"),))


def test_channels_last_architectures_compute_what_the_default_layout_computes(tmp_path):
    """cnn-gmp is built with channels-last weights (faster on CPU); its outputs and input gradients are those
    of the same weights in the default layout, and it saves and loads like any model."""
    from alva.models.zoo import architecture_card, load, save

    torch.manual_seed(0)
    model = create("cnn-gmp", in_shape=(1, 56, 56)).eval()
    # the second conv: a weight with one input channel fits both layouts
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][1]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    plain = create("cnn-gmp", in_shape=(1, 56, 56)).eval().to(memory_format=torch.contiguous_format)
    plain.load_state_dict(model.state_dict())
    x = torch.rand(8, 1, 56, 56, requires_grad=True)
    torch.testing.assert_close(model(x), plain(x), rtol=1e-5, atol=1e-5)
    (g1,) = torch.autograd.grad(model(x).sum(), x)
    (g2,) = torch.autograd.grad(plain(x).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)
    path = save(model, architecture_card(model), tmp_path / "gmp.safetensors")
    torch.testing.assert_close(load(path)(x), model(x), rtol=0, atol=0)
