"""ALVA data generation in chunks: resumable with nothing lost or duplicated."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import TinyConditional

from alva.models import load
from alva.tracking import json_kind
from alva.training import augment
from alva.training.augment import GenerationSettings, generate_dataset, load_dataset


@pytest.fixture(scope="module")
def models():
    return TinyConditional(), load("mnist/cnn-small"), load("mnist/softmax")


def test_a_stopped_generation_resumes_to_the_same_data_set(tmp_path, models, monkeypatch):
    settings = GenerationSettings(n=50, eps=0.5, chunk_size=20, seed=3, keep="all")
    generate_dataset(*models, tmp_path / "whole", settings, progress=False)
    x_whole, y_whole = load_dataset(tmp_path / "whole")
    assert len(x_whole) == 50 and x_whole.min() >= 0 and x_whole.max() <= 1

    real_attack_chunk = augment.attack_chunk

    def stop_at_chunk_2(attack, s, index, device="cpu"):
        if index == 2:
            raise KeyboardInterrupt
        return real_attack_chunk(attack, s, index, device)

    monkeypatch.setattr(augment, "attack_chunk", stop_at_chunk_2)
    with pytest.raises(KeyboardInterrupt):
        generate_dataset(*models, tmp_path / "stopped", settings, progress=False)
    assert len(list((tmp_path / "stopped" / "chunks").glob("*.safetensors"))) == 2
    monkeypatch.setattr(augment, "attack_chunk", real_attack_chunk)
    summary = generate_dataset(*models, tmp_path / "stopped", settings, progress=False)
    x, y = load_dataset(tmp_path / "stopped")
    assert torch.equal(x, x_whole) and torch.equal(y, y_whole)
    assert summary["generated"] == 50 and (tmp_path / "stopped" / "grid.png").exists()


def test_only_valid_adversarial_samples_are_kept_by_default(tmp_path, models):
    summary = generate_dataset(*models, tmp_path, GenerationSettings(n=40, eps=1.0, chunk_size=40), progress=False)
    x, y = load_dataset(tmp_path)
    gen, classifier, oracle = models
    assert len(x) == summary["kept"]
    if len(x):
        assert (classifier(x).argmax(1) != y).all() and (oracle(x).argmax(1) == y).all()


def test_changed_settings_in_the_same_folder_are_refused(tmp_path, models):
    generate_dataset(*models, tmp_path, GenerationSettings(n=10, chunk_size=10, keep="all"), progress=False)
    assert json_kind(json.loads((tmp_path / "config.json").read_text())) == "alva-generation-config"
    assert json_kind(json.loads((tmp_path / "summary.json").read_text())) == "alva-generation-summary"
    with pytest.raises(ValueError, match="other settings"):
        generate_dataset(*models, tmp_path, GenerationSettings(n=10, chunk_size=10, eps=0.1, keep="all"),
                         progress=False)
