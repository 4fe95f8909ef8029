"""CIFAR-10 and CIFAR-100 binaries written in the real record format; the pickled version refused."""

from __future__ import annotations

import pytest
import torch
from data_files import cifar_records, random_uint8, write_cifar10

from alva.data import DataError, load

NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture
def cifar10(tmp_path):
    train = random_uint8(25, (3, 32, 32), seed=1), [i % 10 for i in range(25)]
    test = random_uint8(7, (3, 32, 32), seed=2), [9, 8, 7, 6, 5, 4, 3]
    write_cifar10(tmp_path, train, test, NAMES)
    return tmp_path, train, test


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_records_give_the_images_labels_and_names(cifar10, split):
    root, train, test = cifar10
    images, labels = train if split == "train" else test
    for spec in (f"cifar10:{root}", f"cifar10:{root / 'cifar-10-batches-bin'}"):
        data = load(spec, split)
        assert (data.shape, data.num_classes, data.class_names, data.task) == ((3, 32, 32), 10, tuple(NAMES),
                                                                              "multiclass")
        assert torch.equal(data.x, images.float() / 255)  # R, G, B planes land in channels 0, 1, 2
        assert torch.equal(data.y, torch.tensor(labels))


def test_cifar100_uses_the_fine_label(tmp_path):
    images = random_uint8(5, (3, 32, 32))
    fine, coarse = [99, 0, 42, 7, 63], [19, 0, 1, 2, 3]
    folder = tmp_path / "cifar-100-binary"
    folder.mkdir()
    (folder / "train.bin").write_bytes(cifar_records(images, fine, coarse))
    (folder / "test.bin").write_bytes(cifar_records(images[:2], fine[:2], coarse[:2]))
    data = load(f"cifar100:{tmp_path}", "train")
    assert data.num_classes == 100 and torch.equal(data.y, torch.tensor(fine))
    assert torch.equal(data.x, images.float() / 255)
    assert len(load(f"cifar100:{tmp_path}", "test")) == 2


def test_the_python_version_is_refused_naming_the_binary_version(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "test_batch", "batches.meta"):
        (folder / name).write_bytes(b"\x80\x04pickled")
    with pytest.raises(DataError, match="Python version of CIFAR-10.*cifar-10-binary.tar.gz"):
        load(f"cifar10:{tmp_path}")
    with pytest.raises(DataError, match="Python version of CIFAR-10"):
        load(f"cifar10:{folder}")


def test_a_truncated_file_or_a_label_out_of_range_is_an_error_naming_it(cifar10):
    root, _, _ = cifar10
    path = root / "cifar-10-batches-bin" / "test_batch.bin"
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])
    with pytest.raises(DataError, match="test_batch.bin: .* not a whole number"):
        load(f"cifar10:{root}", "test")
    path.write_bytes(bytes([10]) + raw[1:])
    with pytest.raises(DataError, match="test_batch.bin: label 10 is out of range for 10 classes"):
        load(f"cifar10:{root}", "test")


def test_a_folder_without_cifar_files_is_an_error(tmp_path):
    with pytest.raises(DataError, match="not the binary version of CIFAR-10"):
        load(f"cifar10:{tmp_path}")
