"""train_classifier: what `alva train` writes, and that the result loads like a zoo model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import alva
from alva.data import fixed_subset
from alva.evaluation.accuracy import accuracy
from alva.models import load
from alva.models.zoo import tensor_sha256
from alva.tracking import load_checkpoint, read_metrics
from alva.training import ClassifierRun, TrainSettings, train_classifier

COMMAND = "alva train --model softmax --epochs 2 --train-size 1000"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "softmax"
    settings = TrainSettings(epochs=2, batch_size=100, seed=2)
    run = ClassifierRun(model="softmax", out=str(out), settings=settings, train_size=1000)
    model = train_classifier(run, progress=False, command=COMMAND)
    return out, run, model


def test_writes_the_run_files(run_dir):
    out, _, _ = run_dir
    for name in ("model.safetensors", "model.json", "checkpoint.safetensors", "metrics.jsonl", "config.json"):
        assert (out / name).is_file(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert not list(out.glob(".*.tmp"))


def test_the_written_model_loads_and_matches(run_dir, test_subset):
    out, _, model = run_dir
    assert not model.training
    loaded = load(out)
    assert not loaded.training
    x = test_subset[0][:100]
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(load(out / "model.safetensors")(x), model(x))


def test_the_card_is_true(run_dir, mnist_train, mnist_test):
    out, run, model = run_dir
    info = json.loads((out / "model.json").read_text())
    assert load(out).card == info
    assert info["architecture"] == "softmax"
    assert info["command"] == COMMAND
    assert info["seed"] == 2 and info["epochs"] == 2 and info["train_size"] == 1000
    assert info["objective"] == {"name": "standard"}
    assert info["alva_version"] == alva.__version__ and info["torch_version"] == torch.__version__
    assert info["data_sha256"] == tensor_sha256(*fixed_subset(*mnist_train, 1000, seed=2))
    assert info["clean_test_accuracy"] == pytest.approx(accuracy(model, *mnist_test), abs=1e-6)
    assert info["clean_test_accuracy"] > 0.5  # 1000 images, 2 epochs: far above chance


def test_metrics_and_config(run_dir):
    out, run, _ = run_dir
    records = read_metrics(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    card = json.loads((out / "model.json").read_text())
    assert records[-1]["eval"]["clean_acc"] == card["clean_test_accuracy"]
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "train-config" and config["model"] == "softmax" and config["train_size"] == 1000
    assert config["settings"]["epochs"] == 2 and config["settings"]["seed"] == 2


def test_the_checkpoint_is_safetensors_not_pickle(run_dir):
    out, _, model = run_dir
    path = out / "checkpoint.safetensors"
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert "alva_state" in header["__metadata__"]
    with safe_open(str(path), framework="pt") as f:
        assert any(key.startswith("model.") for key in f.keys())
    state = load_checkpoint(path)
    assert state["epochs_done"] == 2
    for key, value in model.state_dict().items():
        assert torch.equal(state["model"][key], value)


def test_resuming_a_finished_run_changes_nothing(run_dir, test_subset):
    out, run, model = run_dir
    before = (out / "model.safetensors").read_bytes()
    again = train_classifier(run, resume=True, progress=False, command=COMMAND)
    x = test_subset[0][:100]
    assert torch.equal(again(x), model(x))
    assert (out / "model.safetensors").read_bytes() == before
    assert [r["epoch"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
