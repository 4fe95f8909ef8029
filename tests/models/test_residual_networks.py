"""The residual networks of the robustness literature: any input size, channel and class count; the published
sizes; a round trip through the card; and a network that learns."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alva.models import ARCHITECTURES, create, load, save
from alva.models.resnet import preact_resnet18, resnet18
from alva.models.wide_resnet import WideResNet
from alva.models.zoo import architecture_card

RESIDUAL = ["resnet18", "preact-resnet18", "wrn-28-10", "wrn-34-10"]
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
# Millions of parameters at 10 classes as the papers and their reference code give them, to one decimal.
PUBLISHED_MILLIONS = {"resnet18": 11.2, "preact-resnet18": 11.2, "wrn-28-10": 36.5, "wrn-34-10": 46.2}


def _parameters(name: str, num_classes: int = 10) -> int:
    with torch.device("meta"):  # shapes only: counting needs no memory
        model = create(name, num_classes=num_classes, in_shape=(3, 32, 32))
    return sum(p.numel() for p in model.parameters())


def test_the_residual_networks_are_registered():
    assert set(RESIDUAL) <= set(ARCHITECTURES)


@pytest.mark.parametrize("name", RESIDUAL)
def test_parameter_counts_match_the_published_figures(name):
    assert round(_parameters(name) / 1e6, 1) == PUBLISHED_MILLIONS[name]
    # 100 classes add exactly 90 rows to the last linear layer.
    features = {"resnet18": 512, "preact-resnet18": 512, "wrn-28-10": 640, "wrn-34-10": 640}[name]
    assert _parameters(name, 100) - _parameters(name) == 90 * (features + 1)


SMALL = {"resnet18": lambda s, k: resnet18(s, k, width=4), "preact-resnet18": lambda s, k: preact_resnet18(s, k, 4),
         "wrn-28-2": lambda s, k: WideResNet(28, 2, s[0], k), "wrn-34-1": lambda s, k: WideResNet(34, 1, s[0], k)}


@pytest.mark.parametrize("in_shape", SHAPES)
@pytest.mark.parametrize("num_classes", [10, 100])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_any_input_size_channel_count_and_class_count(name, in_shape, num_classes):
    torch.manual_seed(0)
    model = SMALL[name](in_shape, num_classes).eval()
    x = torch.rand(2, *in_shape)
    logits = model(x)
    assert logits.shape == (2, num_classes) and torch.isfinite(logits).all()
    torch.testing.assert_close(model(x[1:]), logits[1:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", RESIDUAL)
def test_full_size_network_on_cifar_sized_images(name):
    torch.manual_seed(0)
    model = create(name, num_classes=100, in_shape=(3, 32, 32)).eval()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    logits = model(x)
    assert logits.shape == (2, 100)
    logits.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", RESIDUAL)
def test_save_and_load_through_the_card(tmp_path, name):
    torch.manual_seed(0)
    model = create(name, num_classes=7, in_shape=(3, 32, 32), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)).eval()
    path = save(model, {**architecture_card(model), "command": "pytest"}, tmp_path / name)
    loaded = load(path)
    assert loaded.card["architecture"] == name and loaded.card["num_classes"] == 7
    x = torch.rand(2, 3, 16, 16)  # any size: small images keep the test fast
    assert torch.equal(loaded(x), model(x))


def test_residual_networks_start_without_normalisation():
    model = create("preact-resnet18", in_shape=(3, 32, 32))
    assert model.mean.flatten().tolist() == [0.0] * 3 and model.std.flatten().tolist() == [1.0] * 3


def test_a_narrow_resnet18_learns_a_generated_batch():
    torch.manual_seed(0)
    x = torch.rand(32, 3, 16, 16)
    y = (x[:, 0].mean(dim=(1, 2)) > x[:, 2].mean(dim=(1, 2))).long()  # red against blue
    model = resnet18((3, 16, 16), 2, width=8).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
