"""The user's own model code (FILE.py:FUNCTION, package.module:FUNCTION) with plain safetensors weights,
normalisation, cards that rebuild it, and pickles refused without being opened."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
import user_models  # this folder: the user's code, importable as a module
from safetensors.torch import save_file

from alva.models import ModelLoadError, available, build, card, check_fits, create, load, model_io, save
from alva.models.zoo import architecture_card, write_weights

USER_FILE = Path(__file__).resolve().parent / "user_models.py"
BY_FILE = f"{USER_FILE}:build"
BY_MODULE = "user_models:build"


def _net(seed: int = 1, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return user_models.build(**kwargs).eval()


def _state_dict_file(path: Path, net: torch.nn.Module, prefix: str = "") -> Path:
    save_file({prefix + k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def _folder(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else b"" for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("spec", [BY_FILE, BY_MODULE])
def test_a_factory_loads_by_file_and_by_module_path(spec):
    model = load(spec)
    assert not model.training
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert type(model.net).__name__ == "TinyResNet"  # imported from the file, or the module itself
    assert model.card["factory"] == (f"{USER_FILE}:build" if spec == BY_FILE else BY_MODULE)


def test_factory_keyword_arguments_reach_the_function_and_the_card():
    model = load(BY_MODULE, kwargs={"num_classes": 3, "width": 4})
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 3)
    assert model.card["kwargs"] == {"num_classes": 3, "width": 4}


@pytest.mark.parametrize("prefix", ["", "module."])
def test_a_plain_state_dict_from_safetensors_gives_the_same_logits(tmp_path, prefix):
    net = _net()
    weights = _state_dict_file(tmp_path / "w.safetensors", net, prefix)
    model = load(BY_FILE, weights=weights)
    x = torch.rand(4, 3, 32, 32)
    assert torch.equal(model(x), net(x))


def test_mean_and_std_wrap_the_model_per_channel(tmp_path):
    net = _net()
    weights = _state_dict_file(tmp_path / "w.safetensors", net)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    model = load(BY_MODULE, weights=weights, mean=mean, std=std, bounds=(0, 1))
    x = torch.rand(4, 3, 32, 32)
    expected = net((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    torch.testing.assert_close(model(x), expected)
    assert model.card["mean"] == pytest.approx(mean) and model.card["std"] == pytest.approx(std)


def test_weights_that_do_not_fit_list_the_keys(tmp_path):
    state = _net().state_dict()
    state["extra.weight"] = torch.zeros(2)
    del state["head.bias"]
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelLoadError) as info:
        load(BY_MODULE, weights=tmp_path / "w.safetensors")
    message = str(info.value)
    assert "head.bias" in message and "extra.weight" in message and str(tmp_path / "w.safetensors") in message
    _state_dict_file(tmp_path / "wide.safetensors", _net(width=16))
    with pytest.raises(ModelLoadError, match="wrong shapes: stem.0.weight"):
        load(BY_MODULE, weights=tmp_path / "wide.safetensors")


@pytest.mark.parametrize(("spec", "error", "words"), [
    (f"{USER_FILE}:not_a_model", ModelLoadError, ["not_a_model", "dict", "torch.nn.Module"]),
    ("user_models:broken", ModelLoadError, ["user_models:broken", "RuntimeError", "out of coffee"]),
    ("user_models:buidl", ModelLoadError, ["buidl", "did you mean build"]),
    ("no_such_module_here:build", ModelLoadError, ["no_such_module_here", "PYTHONPATH"]),
    ("missing/user_code.py:build", FileNotFoundError, ["missing/user_code.py:build", "no file"]),
])
def test_a_factory_that_fails_is_a_clear_error(spec, error, words):
    with pytest.raises(error) as info:
        load(spec)
    for word in words:
        assert word in str(info.value)


def test_an_unknown_zoo_name_lists_close_matches():
    with pytest.raises(FileNotFoundError, match="did you mean mnist/cnn-small"):
        load("mnist/cnn-smal")


def test_factory_options_with_a_zoo_model_are_refused():
    with pytest.raises(ModelLoadError, match="mean, std apply to FILE.py:FUNCTION models only"):
        load("mnist/cnn-small", mean=(0.5,), std=(0.5,))


class _Marker:
    """Unpickling this creates ``path``: proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return io.open, (self.path, "w")


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt"])
def test_a_pickle_is_refused_without_being_opened(tmp_path, suffix):
    pickled = tmp_path / f"model{suffix}"
    torch.save({"payload": _Marker(tmp_path / "marker")}, pickled)
    with pytest.raises(ModelLoadError, match="convert|Convert") as info:
        load(pickled)
    assert "safetensors" in str(info.value)
    with pytest.raises(ModelLoadError, match="pickle"):
        load(BY_MODULE, weights=pickled)
    assert not (tmp_path / "marker").exists()


def test_a_pickle_beside_safetensors_is_refused_not_swapped(tmp_path):
    model = create("cnn-small")
    save(model, architecture_card(model), tmp_path / "model.safetensors")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="pickle"):
        load(tmp_path / "model.pt")
    with pytest.raises(ModelLoadError, match="pickle"):
        card(tmp_path / "model.pt")


@pytest.mark.parametrize("spec", [BY_FILE, BY_MODULE])
def test_a_factory_model_saves_and_loads_back_through_its_card(tmp_path, spec):
    weights = _state_dict_file(tmp_path / "w.safetensors", _net(num_classes=5), "")
    model = load(spec, weights=weights, kwargs={"num_classes": 5}, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2),
                 bounds=(0.0, 1.0), in_shape=(3, 32, 32))
    assert model.card["in_shape"] == [3, 32, 32] and model.card["num_classes"] == 5
    run = tmp_path / "run"
    save(model, {**architecture_card(model), "command": "pytest"}, run / "model.safetensors")
    stored = json.loads((run / "model.json").read_text())
    assert stored["factory"] == model.card["factory"] and stored["kwargs"] == {"num_classes": 5}
    assert stored["bounds"] == [0.0, 1.0] and stored["in_shape"] == [3, 32, 32]
    loaded = load(run, trust_code=True)
    x = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x), model(x))
    assert model_io(loaded) == model_io(model)


@pytest.mark.parametrize("change", [
    {"architecture": "TinyResNet"},
    {"factory": "alva_no_such_module:build"},
    {"factory": "/nowhere/user_models.py:build"},
    {"factory": "subprocess:run"},
    {"num_classes": 11},
])
def test_save_refuses_a_card_it_could_not_load_back_and_writes_nothing(tmp_path, change):
    torch.manual_seed(0)
    model = create("cnn-small")
    info = {**architecture_card(model), **change}
    (tmp_path / "keep.txt").write_text("untouched")
    before = _folder(tmp_path)
    with pytest.raises((ModelLoadError, FileNotFoundError)):
        save(model, info, tmp_path / "out" / "model.safetensors")
    assert _folder(tmp_path) == before


def test_a_card_with_an_unknown_architecture_is_a_clear_error(tmp_path):
    model = create("cnn-small")
    write_weights(model, {**architecture_card(model), "architecture": "TinyResNet"}, tmp_path / "m.safetensors")
    with pytest.raises(ModelLoadError, match="'TinyResNet' is not one of") as info:
        load(tmp_path / "m.safetensors")
    assert str(tmp_path / "m.safetensors") in str(info.value)


def test_a_card_may_not_run_the_standard_library(tmp_path):
    marker = tmp_path / "marker"
    model = create("softmax")
    info = {**architecture_card(model), "factory": "subprocess:run", "kwargs": {"args": ["touch", str(marker)]}}
    del info["architecture"]
    write_weights(model, info, tmp_path / "m.safetensors")
    with pytest.raises(ModelLoadError, match="standard library"):
        load(tmp_path / "m.safetensors", trust_code=True)
    assert not marker.exists()


def test_a_card_that_runs_code_loads_only_when_trusted(tmp_path):
    marker = tmp_path / "imported"
    code = tmp_path / "their_model.py"
    code.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
                    "from torch import nn\n\ndef build():\n    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3))\n")
    model = load(f"{code}:build", in_shape=(3, 2, 2))  # the spec itself is explicit trust
    assert marker.exists()
    marker.unlink()
    path = save(model, architecture_card(model), tmp_path / "run" / "model.safetensors")
    with pytest.raises(ModelLoadError, match=r"runs code from .*their_model\.py:build.*trust_code=True"):
        load(path.parent)
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match="--trust-code"):
        load(path)
    assert not marker.exists()
    x = torch.rand(2, 3, 2, 2)
    assert torch.equal(load(path.parent, trust_code=True)(x), model(x))


def test_model_io_reads_the_card_or_probes():
    zoo = load("mnist/cnn-small")
    assert model_io(zoo) == model_io(zoo, (1, 28, 28))
    assert model_io(zoo).in_shape == (1, 28, 28) and model_io(zoo).num_classes == 10
    user = load(BY_MODULE, kwargs={"num_classes": 4})
    assert model_io(user).in_shape is None and model_io(user).num_classes is None
    probed = model_io(user, (3, 64, 64))
    assert (probed.in_shape, probed.num_classes, probed.bounds) == ((3, 64, 64), 4, (0.0, 1.0))
    assert not user.training


def test_check_fits_names_what_differs():
    zoo = load("mnist/cnn-small")
    assert check_fits(zoo, (1, 28, 28), 10).num_classes == 10
    with pytest.raises(ModelLoadError, match=r"3x32x32.*its card says 1x28x28"):
        check_fits(zoo, (3, 32, 32), 10, model_name="mnist/cnn-small")
    with pytest.raises(ModelLoadError, match="gives 10 outputs but cifar100 has 100 classes"):
        check_fits(zoo, (1, 28, 28), 100, model_name="mnist/cnn-small", data_name="cifar100")
    with pytest.raises(ModelLoadError, match="does not take inputs of shape 3x32x32"):
        load("mnist/cnn-small", in_shape=(3, 32, 32))


def test_every_zoo_classifier_still_loads():
    for name in available():
        if card(name).get("kind", "classifier") == "classifier":
            assert load(name).card == card(name)


def test_build_makes_a_fresh_model_to_train_from_a_name_or_a_factory():
    torch.manual_seed(3)
    first = build(BY_MODULE, in_shape=(3, 32, 32), num_classes=6, kwargs={"num_classes": 6})
    torch.manual_seed(3)
    again = build(BY_MODULE, in_shape=(3, 32, 32), num_classes=6, kwargs={"num_classes": 6})
    assert first.training and first.spec["num_classes"] == 6 and first.spec["in_shape"] == [3, 32, 32]
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])
    resnet = build("preact-resnet18", in_shape=(3, 16, 16), num_classes=100)
    assert resnet.training and resnet.spec["architecture"] == "preact-resnet18"
    assert resnet(torch.rand(2, 3, 16, 16)).shape == (2, 100)


@pytest.mark.parametrize(("spec", "num_classes", "words"), [
    (BY_MODULE, 100, "gives 10 outputs but the data has 100 classes"),
    ("preact-resnet", 10, "did you mean preact-resnet18"),
])
def test_build_refuses_what_does_not_fit(spec, num_classes, words):
    with pytest.raises(ModelLoadError, match=words):
        build(spec, in_shape=(3, 32, 32), num_classes=num_classes)


def test_a_module_in_the_working_directory_loads_by_module_path(tmp_path, monkeypatch):
    (tmp_path / "alva_test_cwd_model.py").write_text(USER_FILE.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "alva_test_cwd_model", raising=False)
    model = load("alva_test_cwd_model:build", kwargs={"num_classes": 2})
    assert model(torch.rand(2, 3, 8, 8)).shape == (2, 2)
    assert str(tmp_path) not in sys.path


def test_a_file_saved_by_alva_is_not_taken_for_plain_weights(tmp_path):
    model = load(BY_MODULE)
    path = save(model, architecture_card(model), tmp_path / "saved.safetensors")
    with pytest.raises(ModelLoadError, match="saved with its card: load it by its path"):
        load(BY_MODULE, weights=path)
    assert torch.equal(load(path, trust_code=True)(torch.zeros(2, 3, 8, 8)), model(torch.zeros(2, 3, 8, 8)))
