"""The zoo: shipped weights with honest cards, save/load round trips, and no unpickling ever."""

from __future__ import annotations

import io
import json
import pickle
import shutil

import pytest
import torch

from alva.evaluation.accuracy import accuracy
from alva.models import available, card, create, load, save
from alva.models.zoo import ZOO_DIR, architecture_card, tensor_sha256

SHIPPED = ["mnist/softmax", "mnist/cnn-small", "mnist/mlp"]
CARD_FIELDS = ("architecture", "num_classes", "in_shape", "mean", "std", "command", "seed", "data_sha256",
               "clean_test_accuracy")


def test_available_lists_the_shipped_models():
    names = available()
    assert set(SHIPPED) <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_card_is_complete(name):
    info = card(name)
    for key in CARD_FIELDS:
        assert key in info, key
    assert info["architecture"] == name.split("/")[1]
    assert 0.0 < info["clean_test_accuracy"] <= 1.0
    assert info["command"].startswith("alva train") and f"--seed {info['seed']}" in info["command"]
    assert len(info["data_sha256"]) == 64


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_is_ready_and_as_accurate_as_its_card(name, test_subset):
    model = load(name)
    assert not model.training
    assert all(not m.training for m in model.modules())
    assert model.card == card(name)
    acc = accuracy(model, *test_subset)
    assert abs(acc - model.card["clean_test_accuracy"]) <= 0.02


@pytest.mark.parametrize("name", SHIPPED)
def test_card_accuracy_is_the_full_test_accuracy(name, mnist_test):
    model = load(name)
    assert accuracy(model, *mnist_test) == pytest.approx(model.card["clean_test_accuracy"], abs=5e-4)


def test_card_data_sha256_is_the_training_split(mnist_train):
    digest = tensor_sha256(*mnist_train)
    for name in SHIPPED:
        info = card(name)
        assert info["train_size"] == len(mnist_train[0])
        assert info["data_sha256"] == digest


def _fresh(name: str = "cnn-small", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create(name)


def _card(model, **extra) -> dict:
    return {**architecture_card(model), "command": "pytest", "seed": 0, **extra}


@pytest.mark.parametrize("name", ["softmax", "maxout", "cnn-small"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, name, test_subset):
    model = _fresh(name).eval()
    path = save(model, _card(model, note="round trip"), tmp_path / "mine")
    assert path == tmp_path / "mine.safetensors"
    assert (tmp_path / "mine.json").exists()
    loaded = load(path)
    assert not loaded.training
    x = test_subset[0][:64]
    assert torch.equal(loaded(x), model(x))
    assert loaded.card["note"] == "round trip"
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])


def test_load_uses_the_card_in_the_header_when_the_json_is_gone(tmp_path, test_subset):
    model = _fresh("mlp").eval()
    path = save(model, _card(model), tmp_path / "mlp.safetensors")
    (tmp_path / "mlp.json").unlink()
    loaded = load(path)
    assert loaded.card["architecture"] == "mlp"
    assert torch.equal(loaded(test_subset[0][:16]), model(test_subset[0][:16]))


def test_save_refuses_a_card_that_cannot_rebuild_the_model(tmp_path):
    model = _fresh()
    info = _card(model)
    del info["architecture"]
    with pytest.raises(ValueError, match="architecture"):
        save(model, info, tmp_path / "m.safetensors")
    assert not (tmp_path / "m.safetensors").exists()


def test_load_a_run_folder(tmp_path, test_subset):
    model = _fresh().eval()
    run = tmp_path / "run"
    save(model, _card(model), run / "model.safetensors")
    loaded = load(run)
    assert torch.equal(loaded(test_subset[0][:16]), model(test_subset[0][:16]))
    assert load(str(run)).card == loaded.card


def test_load_a_copy_of_a_shipped_model_by_path(tmp_path):
    shutil.copy(ZOO_DIR / "mnist" / "softmax.safetensors", tmp_path / "softmax.safetensors")
    shutil.copy(ZOO_DIR / "mnist" / "softmax.json", tmp_path / "softmax.json")
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(load(tmp_path / "softmax.safetensors")(x), load("mnist/softmax")(x))


@pytest.mark.parametrize("name", ["mnist/resnet", "no/such/model"])
def test_loading_a_missing_name_lists_what_is_available(name):
    with pytest.raises(FileNotFoundError) as info:
        load(name)
    message = str(info.value)
    assert name in message
    for shipped in SHIPPED:
        assert shipped in message


class _Marker:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return io.open, (self.path, "w")


def _write_torch_pickle(path, marker):
    torch.save({"net.0.weight": torch.zeros(2), "payload": _Marker(marker)}, path)


def _write_plain_pickle(path, marker):
    path.write_bytes(pickle.dumps({"net.0.weight": _Marker(marker)}))


@pytest.mark.parametrize("card_beside", [False, True])
@pytest.mark.parametrize("write", [_write_torch_pickle, _write_plain_pickle])
def test_a_pickle_named_safetensors_is_refused_and_never_unpickled(tmp_path, write, card_beside):
    # The payload is live: unpickling it does create the marker.
    probe = tmp_path / "probe.pt"
    write(probe, tmp_path / "probe-marker")
    if write is _write_torch_pickle:
        torch.load(probe, weights_only=False)
    else:
        pickle.loads(probe.read_bytes())
    assert (tmp_path / "probe-marker").exists()

    marker = tmp_path / "marker"
    evil = tmp_path / "evil.safetensors"
    write(evil, marker)
    if card_beside:  # a valid card, so that the weights file itself is what gets read
        (tmp_path / "evil.json").write_text(json.dumps(_card(_fresh())))
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        load(evil)
    assert not marker.exists()
