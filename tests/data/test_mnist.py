"""load_mnist: the real files, their checksums, and where they are looked for."""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import pytest
import torch

from alva.data import ENV_VAR, DataError, default_root, load_mnist
from alva.data.mnist import FILES, SHA256

ALL_FILES = [name for pair in FILES.values() for name in pair]


@pytest.fixture
def mnist_copy(tmp_path) -> Path:
    """A private copy of the four gzipped MNIST files, free to damage."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    source = default_root()
    for name in ALL_FILES:
        shutil.copy(source / f"{name}.gz", folder / f"{name}.gz")
    return folder


@pytest.mark.parametrize("split, count", [("train", 60000), ("test", 10000)])
def test_split_shapes_dtypes_and_range(split, count, request):
    x, y = request.getfixturevalue(f"mnist_{split}")
    assert x.shape == (count, 1, 28, 28)
    assert y.shape == (count,)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min().item() == 0.0 and x.max().item() == 1.0
    # Pixels are bytes scaled by 1/255: nothing else crept in.
    assert torch.equal(torch.round(x * 255) / 255, x)
    assert torch.equal(torch.unique(y), torch.arange(10))
    # Every class is well represented (MNIST has 892..1135 per class in test, 5421..6742 in train).
    assert torch.bincount(y, minlength=10).min().item() > count // 20


def test_train_and_test_are_different_images(mnist_train, mnist_test):
    assert not torch.equal(mnist_train[0][:100], mnist_test[0][:100])


def test_unknown_split_raises_value_error():
    with pytest.raises(ValueError, match="validation"):
        load_mnist("validation", download=False)


def test_root_argument_is_honoured(mnist_copy, mnist_test):
    x, y = load_mnist("test", root=mnist_copy, download=False)
    assert torch.equal(x, mnist_test[0]) and torch.equal(y, mnist_test[1])
    # root= accepts a plain string as well.
    x2, _ = load_mnist("test", root=str(mnist_copy), download=False)
    assert torch.equal(x2, x)


def test_environment_variable_is_honoured(monkeypatch, mnist_copy, tmp_path, mnist_test):
    monkeypatch.setenv(ENV_VAR, str(mnist_copy))
    assert default_root() == mnist_copy
    x, y = load_mnist("test", download=False)
    assert torch.equal(x, mnist_test[0]) and torch.equal(y, mnist_test[1])

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_VAR, str(empty))
    with pytest.raises(DataError) as info:
        load_mnist("test", download=False)
    assert str(empty / "t10k-images-idx3-ubyte.gz") in str(info.value)
    # An explicit root= wins over the environment variable.
    x, _ = load_mnist("test", root=mnist_copy, download=False)
    assert torch.equal(x, mnist_test[0])


def test_default_root_without_environment_is_the_repository_copy(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    root = default_root()
    assert (root / "SHA256SUMS.uncompressed").exists()
    for name in ALL_FILES:
        assert (root / f"{name}.gz").exists()


@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_missing_file_without_download_names_the_file(mnist_copy, name):
    (mnist_copy / f"{name}.gz").unlink()
    with pytest.raises(DataError, match="missing") as info:
        load_mnist("test", root=mnist_copy, download=False)
    assert str(mnist_copy / f"{name}.gz") in str(info.value)


def _flip_payload(path: Path) -> None:
    """Change bytes of the unpacked content and gzip it again: a valid gzip file with the wrong content."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    for i in (len(raw) // 3, len(raw) // 2, len(raw) - 1):
        raw[i] ^= 0x5A
    path.write_bytes(gzip.compress(bytes(raw), compresslevel=1))


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _not_gzip(path: Path) -> None:
    path.write_bytes(gzip.decompress(path.read_bytes()))  # the right content, but not gzipped


def _damage_deflate_stream(path: Path) -> None:
    """Flip a byte of the compressed data itself (no re-gzip), as a bad disk or download would.

    The byte is one whose change makes zlib itself fail (not only the gzip CRC check).
    """
    raw = path.read_bytes()
    for pos in range(16, len(raw) - 8):  # past the 10-byte gzip header
        damaged = bytearray(raw)
        damaged[pos] ^= 0xFF
        try:
            gzip.decompress(bytes(damaged))
        except zlib.error:
            path.write_bytes(bytes(damaged))
            return
        except (OSError, EOFError):
            continue
    raise AssertionError("found no byte whose change breaks the deflate stream")


@pytest.mark.parametrize("damage", [_flip_payload, _truncate, _not_gzip, _damage_deflate_stream])
@pytest.mark.parametrize("name", ["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
def test_corrupt_file_is_refused_naming_file_and_checksum(mnist_copy, name, damage):
    path = mnist_copy / f"{name}.gz"
    damage(path)
    with pytest.raises(DataError, match="corrupt") as info:
        load_mnist("test", root=mnist_copy, download=False)
    message = str(info.value)
    assert str(path) in message
    assert SHA256[name] in message


def test_corrupt_file_is_refused_even_with_download_allowed(mnist_copy):
    """A present but damaged file is never silently used (nor replaced behind the user's back)."""
    path = mnist_copy / "t10k-labels-idx1-ubyte.gz"
    _flip_payload(path)
    damaged = path.read_bytes()
    with pytest.raises(DataError, match="corrupt"):
        load_mnist("test", root=mnist_copy, download=True)
    assert path.read_bytes() == damaged


def test_checksums_match_the_shipped_list(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    listed = {}
    for line in (default_root() / "SHA256SUMS.uncompressed").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert listed == SHA256
