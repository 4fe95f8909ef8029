"""The library's own resume checks: fit, ALVA generation and convergence training refuse another run's folder,
listing every difference, and a training whose checkpoint was deleted does not start again silently."""

from __future__ import annotations

import pytest
import torch
from tiny_models import TinyConditional

from alva.data import fixed_subset
from alva.models import create, load
from alva.tracking import DamagedFileError
from alva.training import TrainSettings, fit
from alva.training.augment import GenerationSettings, generate_dataset
from alva.training.loop import CHECKPOINT


@pytest.fixture(scope="module")
def small_train(train_subset):
    return fixed_subset(*train_subset, 200, seed=1)


def _softmax():
    torch.manual_seed(0)
    return create("softmax")


def test_fit_refuses_other_training_data_and_lists_it_with_the_settings(tmp_path, small_train):
    settings = TrainSettings(epochs=1, batch_size=50, seed=0)
    fit(_softmax(), small_train, settings, out=tmp_path, progress=False)
    other = (small_train[0][:100], small_train[1][:100])
    with pytest.raises(ValueError, match=r"settings differ from the saved run \(2 difference") as refused:
        fit(_softmax(), other, TrainSettings(epochs=1, batch_size=50, seed=3), out=tmp_path, resume=True,
            progress=False)
    assert "seed: 0 -> 3" in str(refused.value) and "training data" in str(refused.value)


def test_fit_does_not_start_again_silently_when_the_checkpoint_was_deleted(tmp_path, small_train):
    settings = TrainSettings(epochs=1, batch_size=50, seed=0)
    fit(_softmax(), small_train, settings, out=tmp_path, progress=False)
    (tmp_path / CHECKPOINT).unlink()
    with pytest.raises(FileNotFoundError, match="is missing, but .*metrics.jsonl records 1 finished epoch"):
        fit(_softmax(), small_train, settings, out=tmp_path, resume=True, progress=False)


def test_fit_names_a_truncated_checkpoint(tmp_path, small_train):
    settings = TrainSettings(epochs=1, batch_size=50, seed=0)
    fit(_softmax(), small_train, settings, out=tmp_path, progress=False)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DamagedFileError, match=f"{path} is damaged .*delete it to train again"):
        fit(_softmax(), small_train, settings, out=tmp_path, resume=True, progress=False)


def test_generation_refuses_another_classifier_or_oracle(tmp_path):
    generator = TinyConditional()
    settings = GenerationSettings(n=8, chunk_size=4, keep="all")
    generate_dataset(generator, load("mnist/softmax"), load("mnist/mlp"), tmp_path, settings, progress=False)
    with pytest.raises(ValueError, match="classifier_sha256") as refused:
        generate_dataset(generator, load("mnist/mlp"), load("mnist/softmax"), tmp_path, settings, progress=False)
    assert "oracle_sha256" in str(refused.value)


def test_a_damaged_generation_chunk_is_named(tmp_path):
    generator = TinyConditional()
    settings = GenerationSettings(n=8, chunk_size=4, keep="all")
    classifier = load("mnist/softmax")
    generate_dataset(generator, classifier, None, tmp_path, settings, progress=False)
    chunk = tmp_path / "chunks" / "chunk-00001.safetensors"
    data = bytearray(chunk.read_bytes())
    data[-2] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match=f"{chunk} is damaged .*delete it to generate that chunk again"):
        generate_dataset(generator, classifier, None, tmp_path, settings, progress=False)
