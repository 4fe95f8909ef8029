"""Checkpoints: nested state in one safetensors file, round trips exactly, never unpickles."""

from __future__ import annotations

import io
import json
import math
import pickle

import pytest
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from alva.tracking import load_checkpoint, save_checkpoint


def _assert_same(a, b, where="state"):
    """Equal values of equal types all the way down: tuples stay tuples, int keys stay int, tensors bit-equal.

    Any dict (a state_dict is an OrderedDict) comes back as a plain dict with its keys in the same order.
    """
    expected_type = dict if isinstance(a, dict) else type(a)
    assert type(b) is expected_type, f"{where}: {type(a).__name__} came back as {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b, strict=True)):
            _assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def _trained_adam():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 6)).pow(2).mean().backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_of_nested_state_with_adam(tmp_path):
    model, optimizer = _trained_adam()
    opt_state = optimizer.state_dict()
    assert all(isinstance(k, int) for k in opt_state["state"])  # what makes this hard
    state = {
        "epochs_done": 3,
        "settings": {"lr": 0.1, "name": "adam", "flag": True, "nothing": None, "tiny": 1e-300,
                     "big": float("inf"), "nan": float("nan")},
        "pair": (1, 2.5, "x", None),
        "nested": {"list": [torch.arange(5), [1, 2], (torch.ones(2, 2, dtype=torch.float64),)],
                   "empty": {}, "empty_list": [], "str_digits": {"1": 1, "2": 2}},
        "scalars": {"step": torch.tensor(7.0), "mask": torch.tensor([True, False]),
                    "half": torch.randn(3).half(), "transposed": torch.randn(3, 4).t()},
        "model": model.state_dict(),
        "optimizer": opt_state,
    }
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    _assert_same(state, loaded)
    assert isinstance(loaded["optimizer"]["param_groups"][0]["betas"], tuple)
    assert list(loaded["nested"]["str_digits"]) == ["1", "2"]


def test_a_loaded_optimizer_state_continues_exactly(tmp_path):
    model, optimizer = _trained_adam()
    path = tmp_path / "ckpt.safetensors"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict()})
    loaded = load_checkpoint(path)

    torch.manual_seed(99)  # a different init, overwritten by the checkpoint
    twin = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    twin_opt = torch.optim.Adam(twin.parameters(), lr=1.0)
    twin.load_state_dict(loaded["model"])
    twin_opt.load_state_dict(loaded["optimizer"])
    assert twin_opt.param_groups[0]["lr"] == 1e-2 and twin_opt.param_groups[0]["betas"] == (0.8, 0.95)

    batch = torch.randn(8, 6)
    for net, opt in ((model, optimizer), (twin, twin_opt)):
        opt.zero_grad()
        net(batch).pow(2).mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


def test_saved_tensors_are_copies(tmp_path):
    t = torch.zeros(3)
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"t": t})
    t.add_(1)
    assert torch.equal(load_checkpoint(path)["t"], torch.zeros(3))


def test_checkpoint_is_a_plain_safetensors_file(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(2, 3), "meta": {"epoch": 1}})
    raw = path.read_bytes()
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")  # neither torch.save zip nor a pickle
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    assert header["w"]["shape"] == [2, 3]
    with safe_open(str(path), framework="pt") as f:
        assert torch.equal(f.get_tensor("w"), torch.ones(2, 3))
        assert "alva_state" in f.metadata()


@pytest.mark.parametrize("bad", [{"a": object()}, {"a": {1: 1, "b": 2}}, {"a": {1.5: 1}}, {"a": {1, 2}}])
def test_unstorable_state_raises_type_error(tmp_path, bad):
    path = tmp_path / "c.safetensors"
    with pytest.raises(TypeError):
        save_checkpoint(path, bad)
    assert not path.exists()


def test_a_safetensors_file_without_state_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(ValueError, match="not an alva checkpoint"):
        load_checkpoint(path)


class _Marker:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return io.open, (self.path, "w")


@pytest.mark.parametrize("kind", ["torch", "pickle"])
def test_a_pickle_is_refused_and_never_unpickled(tmp_path, kind):
    marker = tmp_path / "marker"
    path = tmp_path / "checkpoint.safetensors"
    if kind == "torch":
        torch.save({"model": _Marker(marker)}, path)
    else:
        path.write_bytes(pickle.dumps({"model": _Marker(marker)}))
    with pytest.raises((SafetensorError, ValueError)):
        load_checkpoint(path)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Marker(marker)))  # the same payload, unpickled, does run
    assert marker.exists()
