"""The generators: the generative-model interface, shapes and range, weights round trips, shipped quality."""

from __future__ import annotations

import pytest
import torch

from alva import is_generative_model
from alva.evaluation.generative import label_agreement
from alva.models import ACCritic, ACGenerator, Generator, available, card, load, load_generator, save_generator

SHIPPED = ["mnist/acwgan-gp", "mnist/wgan-gp"]
CARD_FIELDS = ("kind", "architecture", "latent_shape", "command", "seed", "epochs", "data_sha256",
               "frechet_distance_oracle_features", "oracle_class_histogram", "train_time_s")


@pytest.fixture(scope="module")
def oracle():
    return load("mnist/mlp")


@pytest.mark.parametrize("make", [ACGenerator, Generator])
def test_fresh_generators_are_generative_models(make):
    torch.manual_seed(0)
    assert is_generative_model(make(), explain=True) == (True, [])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_generators_are_listed_and_are_generative_models(name):
    assert name in available()
    generator = load_generator(name)
    assert not generator.training
    assert is_generative_model(generator, explain=True) == (True, [])


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_is_complete(name):
    info = card(name)
    for key in CARD_FIELDS:
        assert key in info, key
    assert info["kind"] == "generator"
    assert info["command"].startswith("alva gan train") and f"--seed {info['seed']}" in info["command"]
    assert len(info["data_sha256"]) == 64
    assert ("label_agreement" in info) == info["conditional"]
    # the number of classes of the digits it draws: those of its oracle class histogram
    assert info["num_classes"] == len(info["oracle_class_histogram"]) == 10


def test_shapes_and_range():
    torch.manual_seed(0)
    for generator in (ACGenerator(latent_dim=16), Generator(latent_dim=16)):
        z = generator.get_noise(5, seed=0)
        assert z.shape == (5, 16)
        x = generator(z, generator.get_labels(5, seed=0)) if isinstance(generator, ACGenerator) else generator(z)
        assert x.shape == (5, 1, 28, 28)
        assert x.min() >= 0 and x.max() <= 1
    score, logits = ACCritic()(torch.rand(3, 1, 28, 28))
    assert score.shape == (3,) and logits.shape == (3, 10)


@pytest.mark.parametrize("make", [ACGenerator, Generator])
def test_save_load_round_trip(make, tmp_path):
    torch.manual_seed(1)
    generator = make(latent_dim=8).eval()
    path = save_generator(generator, {"command": "pytest", "seed": 1}, tmp_path / "g")
    loaded = load_generator(path)
    assert type(loaded) is make and loaded.latent_shape == (8,)
    assert loaded.card["kind"] == "generator" and loaded.card["command"] == "pytest"
    for k, v in generator.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert load_generator(tmp_path / "g.safetensors").card == loaded.card


def test_generators_and_classifiers_do_not_mix(tmp_path):
    with pytest.raises(ValueError, match="load_generator"):
        load("mnist/acwgan-gp")
    with pytest.raises(ValueError, match="not a generator"):
        load_generator("mnist/mlp")


def test_load_generator_never_unpickles(tmp_path):
    bad = tmp_path / "evil.safetensors"
    bad.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError):
        load_generator(bad)


def test_shipped_conditional_generator_draws_the_asked_class(oracle):
    generator = load_generator("mnist/acwgan-gp")
    agreement = label_agreement(generator, oracle, n=500, seed=123)
    # The card's figure is on 10,000 samples; 500 samples vary by about 1.5 points (one standard error).
    assert agreement >= 0.95  # the quality bar of the shipped generator
    assert agreement == pytest.approx(generator.card["label_agreement"], abs=0.05)
