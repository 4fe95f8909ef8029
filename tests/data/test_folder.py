"""Image folders: layout, channels, sizes, splits, streaming on demand, and errors that name the file."""

from __future__ import annotations

import pytest
import torch
from data_files import folder_order, random_uint8, save_image, write_folder

import alva.data.folder
from alva.data import DataError, load

CLASSES = ["cat", "dog", "frog"]


def _labels(n: int) -> list[int]:
    return [(i * 7) % len(CLASSES) for i in range(n)]


@pytest.fixture
def rgb_folder(tmp_path):
    """12 random RGB 3 x 32 x 32 PNGs over three classes, with the uint8 images and labels written."""
    images, labels = random_uint8(12, (3, 32, 32)), _labels(12)
    write_folder(tmp_path / "rgb", images, labels, CLASSES)
    return tmp_path / "rgb", images, labels


@pytest.mark.parametrize("stream", [False, True])
def test_png_folder_reads_exact_pixels_labels_and_class_names(rgb_folder, stream):
    root, images, labels = rgb_folder
    data = load(str(root), stream=stream)
    order = folder_order(labels)
    assert data.in_memory is not stream
    assert (data.shape, data.num_classes, data.class_names, data.task, len(data)) == (
        (3, 32, 32), 3, tuple(CLASSES), "multiclass", 12)
    x, y = data.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, images[order].float() / 255)
    assert torch.equal(y, torch.tensor(labels)[order])


def test_grey_folder_has_one_channel_and_a_colour_image_makes_it_rgb(tmp_path):
    grey = random_uint8(4, (1, 8, 8))
    write_folder(tmp_path / "g", grey, [0, 1, 0, 1], ["a", "b"])
    data = load(str(tmp_path / "g"))
    assert data.shape == (1, 8, 8)
    assert torch.equal(data.x, grey[folder_order([0, 1, 0, 1])].float() / 255)

    save_image(random_uint8(1, (3, 8, 8))[0], tmp_path / "g" / "b" / "colour.png")
    mixed = load(str(tmp_path / "g"))
    assert mixed.shape == (3, 8, 8)
    # A grey image read as RGB repeats its one channel three times.
    assert torch.equal(mixed.x[0, 0], mixed.x[0, 1]) and torch.equal(mixed.x[0, 0], data.x[0, 0])


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".bmp", ".PNG"])
def test_jpeg_and_bmp_are_read(tmp_path, suffix):
    images = random_uint8(4, (3, 16, 16))
    write_folder(tmp_path / "f", images, [0, 1, 1, 0], ["x", "y"], suffix=suffix)
    data = load(str(tmp_path / "f"))
    assert data.shape == (3, 16, 16) and len(data) == 4
    if suffix in (".bmp", ".PNG"):  # lossless
        assert torch.equal(data.x, images[folder_order([0, 1, 1, 0])].float() / 255)
    else:  # JPEG is lossy on random pixels but stays an image of the same content, not noise or zeros
        assert 0.0 < data.x.mean() < 1.0


def test_files_other_than_images_are_skipped(rgb_folder):
    root, _, _ = rgb_folder
    (root / "cat" / "notes.txt").write_text("not an image")
    assert len(load(str(root))) == 12


def test_mixed_sizes_are_refused_naming_the_file_unless_resized(tmp_path):
    write_folder(tmp_path / "m", random_uint8(2, (3, 16, 16)), [0, 1], ["a", "b"])
    save_image(random_uint8(1, (3, 20, 24))[0], tmp_path / "m" / "b" / "big.png")
    with pytest.raises(DataError, match="big.png.*mixed sizes"):
        load(str(tmp_path / "m"))
    for stream in (False, True):
        data = load(str(tmp_path / "m"), resize=(12, 10), stream=stream)
        assert data.shape == (3, 12, 10)
        x, _ = data.tensors()
        assert x.shape == (3, 3, 12, 10) and 0.0 <= x.min() and x.max() <= 1.0


def test_train_and_test_subfolders_are_chosen_by_split(tmp_path):
    write_folder(tmp_path / "s" / "train", random_uint8(6, (3, 8, 8), seed=1), [0, 1, 2, 0, 1, 2], CLASSES)
    write_folder(tmp_path / "s" / "test", random_uint8(3, (3, 8, 8), seed=2), [0, 1, 2], CLASSES)
    assert len(load(str(tmp_path / "s"), "train")) == 6
    assert len(load(str(tmp_path / "s"), "test")) == 3
    with pytest.raises(ValueError, match="unknown split"):
        load(str(tmp_path / "s"), "validation")


def test_streaming_reads_only_the_images_of_each_batch(tmp_path, monkeypatch):
    n = 300
    labels = [i % 3 for i in range(n)]
    images = random_uint8(n, (3, 8, 8))
    write_folder(tmp_path / "many", images, labels, CLASSES)
    reads = []
    original = alva.data.folder.read_image
    monkeypatch.setattr(alva.data.folder, "read_image", lambda path, *a: reads.append(path) or original(path, *a))

    data = load(str(tmp_path / "many"), stream=True)
    assert not data.in_memory and reads == []  # loading reads headers only
    order = folder_order(labels)
    seen = 0
    for xb, yb in data.loader(64):
        assert len(reads) == seen + len(xb)  # one file read per image of this batch, none ahead
        assert torch.equal(xb, images[order][seen:seen + len(xb)].float() / 255)
        assert torch.equal(yb, torch.tensor(labels)[order][seen:seen + len(xb)])
        seen += len(xb)
    assert seen == n

    reads.clear()
    x, y = data.tensors(30, seed=4)
    assert len(reads) == 30 and x.shape == (30, 3, 8, 8)
    assert torch.bincount(y).tolist() == [10, 10, 10]


def test_streaming_with_workers_gives_the_same_batches(rgb_folder):
    root, _, _ = rgb_folder
    data = load(str(root), stream=True)
    one = [b for b in data.loader(5, shuffle=True, seed=2)]
    two = [b for b in data.loader(5, shuffle=True, seed=2, num_workers=2)]
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, two, strict=True))
    memory = load(str(root), stream=False)
    three = list(memory.loader(5, shuffle=True, seed=2))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(one, three, strict=True))


def test_no_class_folders_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "flat").mkdir()
    save_image(random_uint8(1, (3, 8, 8))[0], tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="flat: no class folders"):
        load(str(tmp_path / "flat"))


def test_class_folders_without_images_are_an_error(tmp_path):
    (tmp_path / "e" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="hold no images"):
        load(str(tmp_path / "e"))


def test_an_unreadable_image_is_an_error_naming_it(tmp_path):
    write_folder(tmp_path / "u", random_uint8(2, (3, 8, 8)), [0, 1], ["a", "b"])
    (tmp_path / "u" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataError, match="broken.png: unreadable image"):
        load(str(tmp_path / "u"))


def test_an_image_damaged_after_its_header_is_an_error_when_read(tmp_path):
    write_folder(tmp_path / "d", random_uint8(2, (3, 32, 32)), [0, 1], ["a", "b"])
    path = tmp_path / "d" / "b" / "0001.png"
    path.write_bytes(path.read_bytes()[:100])  # header intact, pixel data cut
    data = load(str(tmp_path / "d"), stream=True)
    with pytest.raises(DataError, match="0001.png: unreadable image"):
        data.tensors()
    with pytest.raises(DataError, match="0001.png: unreadable image"):  # raised in a worker, seen here
        list(data.loader(2, num_workers=1))
