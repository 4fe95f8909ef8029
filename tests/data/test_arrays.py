"""``.npz`` and ``.safetensors`` data sets: layouts, scaling, labels, splits, and errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_files import random_uint8, write_npz
from safetensors.torch import save_file

from alva.data import DataError, load


@pytest.fixture
def uint8_nchw():
    return random_uint8(10, (3, 32, 32)).numpy(), np.arange(10) % 4


def test_npz_uint8_nchw_is_scaled_by_255(tmp_path, uint8_nchw):
    x, y = uint8_nchw
    data = load(str(write_npz(tmp_path / "d.npz", x=x, y=y)))
    assert (data.shape, data.num_classes, data.task, len(data)) == ((3, 32, 32), 4, "multiclass", 10)
    assert data.x.dtype == torch.float32 and data.y.dtype == torch.int64
    assert torch.equal(data.x, torch.from_numpy(x).float() / 255)
    assert torch.equal(data.y, torch.from_numpy(y))


@pytest.mark.parametrize("channels", [1, 3])
def test_nhwc_is_detected_and_gives_the_same_tensors(tmp_path, uint8_nchw, channels):
    x, y = uint8_nchw
    x = x[:, :channels]
    nchw = load(str(write_npz(tmp_path / "a.npz", x=x, y=y)))
    nhwc = load(str(write_npz(tmp_path / "b.npz", x=x.transpose(0, 2, 3, 1), y=y)))
    assert nhwc.shape == (channels, 32, 32)
    assert torch.equal(nchw.x, nhwc.x)


def test_grey_n_h_w_gets_one_channel(tmp_path, uint8_nchw):
    x, y = uint8_nchw
    assert load(str(write_npz(tmp_path / "g.npz", x=x[:, 0], y=y))).shape == (1, 32, 32)


def test_float_images_are_kept_and_multi_hot_labels_make_a_multilabel_set(tmp_path):
    x = np.random.default_rng(0).random((6, 1, 5, 5)).astype(np.float64)
    y = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1]], dtype=np.uint8)
    data = load(str(write_npz(tmp_path / "m.npz", x=x, y=y)))
    assert (data.task, data.num_classes, data.y.dtype) == ("multilabel", 3, torch.float32)
    assert torch.equal(data.x, torch.from_numpy(x).float())
    assert torch.equal(data.y, torch.from_numpy(y).float())
    sub_x, sub_y = data.tensors(4, seed=1)
    assert sub_x.shape == (4, 1, 5, 5) and sub_y.shape == (4, 3)


def test_safetensors_gives_the_same_data_as_npz(tmp_path, uint8_nchw):
    x, y = uint8_nchw
    save_file({"x": torch.from_numpy(x), "y": torch.from_numpy(y)}, tmp_path / "d.safetensors")
    from_npz = load(str(write_npz(tmp_path / "d.npz", x=x, y=y)))
    from_st = load(str(tmp_path / "d.safetensors"))
    assert torch.equal(from_st.x, from_npz.x) and torch.equal(from_st.y, from_npz.y)
    assert from_st.fingerprint == from_npz.fingerprint


def test_split_in_the_file_name_picks_the_file_and_a_plain_name_is_one_split(tmp_path, uint8_nchw):
    x, y = uint8_nchw
    write_npz(tmp_path / "set-train.npz", x=x, y=y)
    write_npz(tmp_path / "set-test.npz", x=x[:3], y=y[:3])
    spec = str(tmp_path / "set-{split}.npz")
    assert len(load(spec, "train")) == 10 and len(load(spec, "test")) == 3
    assert len(load(str(tmp_path / "set-test.npz"), "train")) == 3


def test_resize_applies_to_arrays(tmp_path, uint8_nchw):
    x, y = uint8_nchw
    data = load(str(write_npz(tmp_path / "d.npz", x=x, y=y)), resize=(16, 24))
    assert data.shape == (3, 16, 24) and data.x.shape == (10, 3, 16, 24)
    assert 0.0 <= data.x.min() and data.x.max() <= 1.0


BAD = {
    "names": ({"images": np.zeros((2, 1, 4, 4)), "labels": np.zeros(2)}, "arrays named 'x'"),
    "lengths": ({"x": np.zeros((3, 1, 4, 4)), "y": np.zeros(2, dtype=np.int64)}, "3 images but 2 labels"),
    "negative": ({"x": np.zeros((2, 1, 4, 4)), "y": np.array([0, -1])}, "must not be negative"),
    "nan": ({"x": np.full((2, 1, 4, 4), np.nan), "y": np.array([0, 1])}, "NaN"),
    "range": ({"x": np.full((2, 1, 4, 4), 2.0), "y": np.array([0, 1])}, r"must lie in \[0, 1\]"),
    "channels": ({"x": np.zeros((2, 5, 4, 4)), "y": np.array([0, 1])}, "1 or 3 channels"),
    "multi-hot": ({"x": np.zeros((2, 1, 4, 4)), "y": np.array([[0, 2], [1, 0]])}, "must be 0 or 1"),
    "fractional": ({"x": np.zeros((2, 1, 4, 4)), "y": np.array([0.5, 1.0])}, "whole numbers"),
    "empty": ({"x": np.zeros((0, 1, 4, 4)), "y": np.zeros(0, dtype=np.int64)}, "holds no images"),
    "strings": ({"x": np.zeros((2, 1, 4, 4)), "y": np.array(["a", "b"])}, "expected numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_arrays_are_an_error_naming_the_file(tmp_path, case):
    arrays, message = BAD[case]
    path = write_npz(tmp_path / f"bad-{case}.npz", **arrays)
    with pytest.raises(DataError, match=message) as caught:
        load(str(path))
    assert str(path) in str(caught.value)


def test_pickled_objects_in_an_npz_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, x=np.zeros((2, 1, 4, 4)), y=np.array([{"label": 0}, {"label": 1}], dtype=object))
    with pytest.raises(DataError, match="pickled.npz"):
        load(str(path))


def test_a_missing_or_corrupt_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match="nothere.npz: no such file"):
        load(str(tmp_path / "nothere.npz"))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="junk.safetensors: not a readable"):
        load(str(tmp_path / "junk.safetensors"))
    save_file({"x": torch.zeros(2, 1, 4, 4)}, tmp_path / "noy.safetensors")
    with pytest.raises(DataError, match="noy.safetensors: .*tensors named 'x'"):
        load(str(tmp_path / "noy.safetensors"))
