"""Image sets stored as two arrays ``x`` and ``y``: ``.npz`` (read without pickle) and ``.safetensors`` files.

Images are uint8 (0-255, divided by 255) or floating point (0-1), ``N x C x H x W``, or ``N x H x W x C``
when the last axis is 1 or 3 and the second is not; ``N x H x W`` is one grey channel. Labels are class
indices (``N``) or multi-hot rows (``N x K``).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from alva.data.dataset import ImageData, checked_labels, numbered_names
from alva.data.mnist import DataError

CHANNELS = (1, 3)


def images_to_float(x: torch.Tensor, origin: str) -> torch.Tensor:
    """Images as float32 ``N x C x H x W`` in [0, 1]: layout detected, uint8 scaled, range checked.

    Args:
        x: uint8 or floating point images, NCHW, NHWC or NHW.
        origin: The file named in errors.
    """
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4:
        raise DataError(f"{origin}: images must be N x C x H x W or N x H x W x C, got shape {tuple(x.shape)}")
    if x.shape[-1] in CHANNELS and x.shape[1] not in CHANNELS:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] not in CHANNELS:
        raise DataError(f"{origin}: images must have 1 or 3 channels (axis 1 of NCHW or the last axis of NHWC), "
                        f"got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.contiguous().to(torch.float32).div_(255.0)
    if not x.is_floating_point():
        raise DataError(f"{origin}: images must be uint8 (0-255) or floating point (0-1), got {x.dtype}")
    x = x.contiguous().to(torch.float32)
    if torch.isnan(x).any():
        raise DataError(f"{origin}: images contain NaN")
    if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise DataError(f"{origin}: float images must lie in [0, 1], found values in "
                        f"[{float(x.min()):g}, {float(x.max()):g}] (store uint8 0-255 or divide by 255)")
    return x


def arrays_to_data(x: torch.Tensor, y: torch.Tensor, *, source: str, split: str, origin: str,
                   class_names: tuple[str, ...] | None = None) -> ImageData:
    """An in-memory :class:`ImageData` from raw image and label tensors, checked (errors name ``origin``).

    Args:
        x: Images (see :func:`images_to_float`).
        y: Labels: class indices ``N`` or multi-hot ``N x K``.
        source: The spec the data was loaded from.
        split: The split asked for.
        origin: The file named in errors.
        class_names: Names of the classes; numbers when ``None``.
    """
    if len(x) != len(y):
        raise DataError(f"{origin}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise DataError(f"{origin}: holds no images")
    images = images_to_float(x, origin)
    labels, task, k = checked_labels(y, None if class_names is None else len(class_names), origin)
    names = class_names if class_names is not None else numbered_names(k)
    c, h, w = images.shape[1:]
    return ImageData(source=source, split=split, shape=(c, h, w), class_names=names, task=task,
                     labels=labels, x=images, origin=origin)


def split_path(path: str, split: str) -> Path:
    """The file of ``split``: ``{split}`` in the name is replaced by it (``cifar-{split}.npz``); a name
    without it holds one split and is read whatever ``split`` says."""
    return Path(path.replace("{split}", split))


def read_npz(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Arrays ``x`` and ``y`` of an ``.npz`` file, read with ``allow_pickle=False``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = set(archive.files)
            if not {"x", "y"} <= names:
                raise DataError(f"{path}: an .npz data set holds arrays named 'x' (images) and 'y' (labels), "
                                f"found {sorted(names)}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file without pickled objects ({err})") from err
    return _as_tensor(x, path, "x"), _as_tensor(y, path, "y")


def _as_tensor(array: np.ndarray, path: Path, name: str) -> torch.Tensor:
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise DataError(f"{path}: array {name!r} has dtype {array.dtype}, expected numbers")
    if array.dtype == np.uint16 or array.dtype == np.uint32 or array.dtype == np.uint64:
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array))


def read_safetensors(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Tensors ``x`` and ``y`` of a ``.safetensors`` file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .safetensors file ({err})") from err
    if not {"x", "y"} <= set(tensors):
        raise DataError(f"{path}: a .safetensors data set holds tensors named 'x' (images) and 'y' (labels), "
                        f"found {sorted(tensors)}")
    y = tensors["y"]
    if y.dtype == torch.bool:
        y = y.to(torch.uint8)
    return tensors["x"], y


def load_array_file(spec: str, split: str) -> ImageData:
    """An ``.npz`` or ``.safetensors`` data set (see the module); ``{split}`` in the name picks the file."""
    path = split_path(spec, split)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    x, y = read_npz(path) if path.suffix == ".npz" else read_safetensors(path)
    return arrays_to_data(x, y, source=spec, split=split, origin=str(path))


__all__ = ["arrays_to_data", "images_to_float", "load_array_file", "read_npz", "read_safetensors", "split_path"]
