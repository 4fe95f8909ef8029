"""The library behind the commands on a user's own model and 3 x 32 x 32 data: substitutes, detectors, the
fake-class network and AdvGAN take shapes and classes from the data and the model, not from MNIST."""

from __future__ import annotations

import pytest
import torch

import alva.models
from alva.defenses import make_detector, train_detector
from alva.training.advgan import AdvGANSettings, train_advgan
from alva.training.fakeclass import FakeClassSettings
from alva.training.fakeclass.network import start_model
from alva.training.loop import TrainSettings
from alva.training.substitute import train_substitute

USER = "tests/models/user_models.py:build"
SHAPE = (3, 32, 32)
ONE_EPOCH = TrainSettings(epochs=1, batch_size=32, lr=1e-3, seed=0)


@pytest.fixture(scope="module")
def rgb() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 10
    x = (torch.rand(64, *SHAPE, generator=g) * 0.5 + y[:, None, None, None] / 20).clamp(0, 1)
    return x, y


@pytest.fixture(scope="module")
def user_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return alva.models.load(USER, in_shape=SHAPE)


def test_a_substitute_of_a_user_model_takes_the_shape_and_classes_of_the_data(rgb, user_model):
    x, y = rgb
    model, queries = train_substitute(user_model, x, mode="query-labels", query_budget=40, settings=ONE_EPOCH)
    assert queries == 40
    assert model(x[:2]).shape == (2, 10)
    assert model.spec["in_shape"] == list(SHAPE)
    assert model.mean.flatten().tolist() == [0.0, 0.0, 0.0]  # no MNIST statistics on RGB images


def test_a_substitute_can_be_the_users_own_architecture_with_the_labels_classes(rgb):
    x, y = rgb
    model, queries = train_substitute(None, (x, y), architecture=USER, settings=ONE_EPOCH)
    assert queries == 0 and model(x[:3]).shape == (3, 10)
    assert model.spec["factory"].endswith("user_models.py:build")


def test_a_substitute_refuses_a_user_architecture_with_other_classes(rgb):
    x, y = rgb
    with pytest.raises(ValueError, match="10 outputs but the data has 4 classes"):
        train_substitute(None, (x, y % 4), architecture=USER, settings=ONE_EPOCH)


def test_a_detector_is_built_for_the_images_it_is_trained_on(rgb):
    x, _ = rgb
    detector = train_detector(x[:32], (x[32:] + 0.2).clamp(0, 1), settings=ONE_EPOCH)
    assert detector.spec["in_shape"] == list(SHAPE)
    assert detector(x[:2]).shape == (2, 1)
    assert make_detector("mlp", (3, 16, 16))(torch.zeros(1, 3, 16, 16)).shape == (1, 1)


def test_the_fake_class_network_of_a_user_model_has_2k_outputs_from_scratch_and_expanded(user_model):
    expanded = start_model(user_model, FakeClassSettings(), SHAPE, "cpu")
    assert expanded(torch.zeros(2, *SHAPE)).shape == (2, 20)
    fresh = start_model(user_model, FakeClassSettings(from_scratch=True), SHAPE, "cpu")
    assert fresh(torch.zeros(2, *SHAPE)).shape == (2, 20)
    assert not torch.equal(fresh.net.head.weight[:10], user_model.net.head.weight)  # freshly initialised


def test_advgan_on_a_small_rgb_set_reads_the_classes_from_the_model(rgb, user_model, tmp_path):
    settings = AdvGANSettings(epochs=1, batch_size=32, width=4, targeted=True)
    generator, history = train_advgan(user_model, rgb, 8 / 255, settings, out=tmp_path, progress=False)
    assert generator.card["target_model_classes"] == 10 and generator.num_classes == 10
    assert generator.channels == 3 and len(history) == 1
    assert list((tmp_path / "samples").glob("*.png"))  # a square grid of the 64 shown images
