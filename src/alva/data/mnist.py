"""MNIST from the four standard gzipped IDX files, checked against their SHA-256 sums.

LeCun, Cortes and Burges, "The MNIST database of handwritten digits" (1998).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import torch

from alva.tracking.files import atomic_write_bytes

ENV_VAR = "ALVA_MNIST_ROOT"

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of each file after gunzip: the content distributed by the MNIST authors.
SHA256 = {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class DataError(RuntimeError):
    """A data file is missing, corrupt or of the wrong format."""


def default_root() -> Path:
    """The MNIST folder: ``$ALVA_MNIST_ROOT``, else the copy carried in the repository's ``data/mnist``."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "data" / "mnist"
        if (candidate / "SHA256SUMS.uncompressed").exists():
            return candidate
    return Path.cwd() / "data" / "mnist"


def load_mnist(split: str, root: str | os.PathLike | None = None, *, download: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Load an MNIST split as ``(images, labels)``.

    images: float32 ``N x 1 x 28 x 28`` in [0, 1]; labels: int64 ``N``.
    Every file's SHA-256 is checked; a missing file is downloaded from the public mirrors
    when ``download`` is true and the network is there.
    """
    if split not in FILES:
        raise ValueError(f"unknown MNIST split {split!r}; expected one of {sorted(FILES)}")
    folder = Path(root) if root is not None else default_root()
    image_name, label_name = FILES[split]
    images = _read_idx(_verified_bytes(folder, image_name, download))
    labels = _read_idx(_verified_bytes(folder, label_name, download))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{folder}: images {tuple(images.shape)} and labels {tuple(labels.shape)} do not match")
    x = torch.from_numpy(images).unsqueeze(1).to(torch.float32).div_(255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _verified_bytes(folder: Path, name: str, download: bool) -> bytes:
    path = folder / f"{name}.gz"
    if not path.exists():
        if not download:
            raise DataError(f"MNIST file missing: {path} (set root= or ${ENV_VAR} to the folder that holds it)")
        _download(path, name)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: damaged deflate data inside a gzip file
        raise DataError(
            f"MNIST file corrupt: {path} is not a readable gzip file ({err}); expected it to unpack to "
            f"SHA-256 {SHA256[name]}; delete it (it is downloaded again where the network is there) "
            "or restore it"
        ) from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[name]:
        raise DataError(
            f"MNIST file corrupt: {path} unpacks to SHA-256 {digest}, expected {SHA256[name]}; "
            "delete it (it is downloaded again where the network is there) or restore it"
        )
    return raw


def _download(path: Path, name: str) -> None:
    errors = []
    path.parent.mkdir(parents=True, exist_ok=True)
    for mirror in MIRRORS:
        url = mirror + name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                payload = response.read()
        except OSError as err:
            errors.append(f"{url}: {err}")
            continue
        if hashlib.sha256(gzip.decompress(payload)).hexdigest() != SHA256[name]:
            errors.append(f"{url}: checksum mismatch")
            continue
        atomic_write_bytes(path, payload)
        return
    raise DataError(f"MNIST file missing: {path}, and no mirror could provide it:\n  " + "\n  ".join(errors))


def _read_idx(raw: bytes) -> np.ndarray:
    """Parse an IDX file (magic: two zero bytes, a type code, the number of dimensions)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError("not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"IDX body has {body.size} bytes, header says {shape}")
    return body.reshape(shape).copy()


__all__ = ["DataError", "load_mnist", "default_root", "ENV_VAR"]
