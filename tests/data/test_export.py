"""export: the MNIST test set as a PNG folder and as .npz loads back bit-identical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from data_files import write_npz
from PIL import Image

from alva.data import DataError, export, load


@pytest.fixture(scope="module")
def mnist():
    return load("mnist", "test")


def test_png_export_of_the_mnist_test_set_loads_back_bit_identical_in_order(mnist, tmp_path):
    out = export("mnist", "test", tmp_path / "png", format="png")
    back = load(str(out))
    assert (back.shape, back.class_names, len(back)) == (mnist.shape, mnist.class_names, 10000)
    assert torch.equal(back.x, mnist.x) and torch.equal(back.y, mnist.y)  # files named by number: source order
    first_three = int(torch.nonzero(mnist.y == 3)[0])
    assert sorted(p.name for p in (out / "3").iterdir())[0] == f"{first_three:04d}.png"
    streamed = load(str(out), stream=True)
    assert streamed.fingerprint == back.fingerprint == mnist.fingerprint
    assert torch.equal(back.subset_indices(300, seed=0), mnist.subset_indices(300, seed=0))


def test_a_folder_of_names_that_are_not_all_distinct_numbers_is_read_class_by_class(tmp_path):
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    for i, (name, label) in enumerate([("7.png", "a"), ("3.png", "b"), ("7.png", "b"), ("1.png", "a")]):
        (tmp_path / label).mkdir(exist_ok=True)
        Image.fromarray(images[i, 0].numpy()).save(tmp_path / label / name)
    data = load(str(tmp_path))
    assert data.y.tolist() == [0, 0, 1, 1]  # 7.png repeats: class a (1, 7), then class b (3, 7)
    assert torch.equal(data.x, images[[3, 0, 1, 2]].float() / 255)


def test_npz_export_of_the_mnist_test_set_loads_back_bit_identical_in_order(mnist, tmp_path):
    out = export("mnist", "test", tmp_path / "mnist-test.npz", format="npz")
    with np.load(out, allow_pickle=False) as stored:
        assert stored["x"].dtype == np.uint8  # 8-bit images are stored as 8 bits
    back = load(str(out))
    assert torch.equal(back.x, mnist.x) and torch.equal(back.y, mnist.y)
    assert back.fingerprint == mnist.fingerprint


def test_float_images_export_to_npz_exactly_and_are_refused_for_png(tmp_path):
    x = np.random.default_rng(0).random((4, 3, 5, 5)).astype(np.float32)
    source = str(write_npz(tmp_path / "f.npz", x=x, y=np.array([0, 1, 0, 1])))
    back = load(str(export(source, "test", tmp_path / "back.npz", format="npz")))
    assert torch.equal(back.x, torch.from_numpy(x))
    with pytest.raises(DataError, match="not 8-bit"):
        export(source, "test", tmp_path / "png", format="png")
    assert not (tmp_path / "png").exists() and not (tmp_path / "png.partial").exists()


def test_multilabel_data_exports_to_npz_but_not_to_png(tmp_path):
    back = load(str(export("mnist-multilabel", "test", tmp_path / "ml.npz", format="npz", count=20)))
    source = load("mnist-multilabel", "test", count=20)
    assert back.task == "multilabel" and torch.equal(back.x, source.x) and torch.equal(back.y, source.y)
    with pytest.raises(DataError, match="multi-label"):
        export(source, "test", tmp_path / "png", format="png")


def test_class_names_that_do_not_sort_in_class_order_get_an_index(tmp_path):
    x = np.zeros((3, 1, 2, 2), dtype=np.uint8)
    data = load(str(write_npz(tmp_path / "d.npz", x=x, y=np.array([0, 11, 2]))))  # names "0".."11"
    out = export(data, "test", tmp_path / "png")
    back = load(str(out))
    assert back.num_classes == 12 and back.y.tolist() == [0, 11, 2]  # the source order
    assert back.class_names[:3] == ("00-0", "01-1", "02-2")


def test_export_refuses_to_write_into_a_folder_with_files(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        export("mnist", "test", tmp_path / "taken")
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    with pytest.raises(ValueError, match="unknown export format"):
        export("mnist", "test", tmp_path / "x", format="jpeg")


def test_a_second_png_export_to_the_same_folder_stops_and_leaves_the_first_alone(tmp_path):
    """While one export holds ``OUT.partial`` (an export under way), another to the same OUT stops naming it,
    writes nothing and removes nothing of the first."""
    from alva.tracking.lock import RunFolderBusy, acquire

    out, partial = tmp_path / "png", tmp_path / "png.partial"
    partial.mkdir()
    (partial / "0").mkdir()
    (partial / "0" / "0000.png").write_bytes(b"half-written by the first export")
    first = acquire(partial, "data export --out png")
    try:
        with pytest.raises(RunFolderBusy, match="held by process"):
            export("mnist", "test", out, format="png", count=20)
        assert not out.exists()
        assert (partial / "0" / "0000.png").read_bytes() == b"half-written by the first export"
    finally:
        first.release()


def test_a_png_export_clears_what_a_killed_export_left_and_writes_only_the_data(tmp_path):
    out, partial = tmp_path / "png", tmp_path / "png.partial"
    (partial / "stray").mkdir(parents=True)
    (partial / "stray" / "9999.png").write_bytes(b"left by a killed export")
    (partial / ".alva-lock").write_text('{"pid": 1, "command": "data export"}')  # its lock, no longer held
    export("mnist", "test", out, format="png", count=20)
    source = load("mnist", "test", count=20)
    back = load(str(out))
    assert torch.equal(back.x, source.x) and torch.equal(back.y, source.y)
    assert sorted(p.name for p in out.iterdir()) == [str(c) for c in range(10)]  # no stray folder, no lock file
    assert not partial.exists()
