"""Write a data set as an image folder of PNGs or as an ``.npz`` file that :func:`alva.data.load` reads back
with exactly the same tensors.

PNG is lossless for 8-bit images, which every uint8-stored source is (MNIST, CIFAR, PNG folders, uint8
arrays); images that are not multiples of 1/255 are refused for PNG (the ``.npz`` then stores float32).
File ``{i}.png`` of a PNG export is sample ``i`` of the source, and a folder whose files are all named by distinct
numbers is read in the order of those numbers: both exports read back in the source's order.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alva.data.dataset import ImageData
from alva.data.mnist import DataError
from alva.data.registry import load
from alva.tracking.files import atomic_write_bytes
from alva.tracking.lock import LOCK_FILE, acquire

FORMATS = ("png", "npz")


def as_uint8(x: torch.Tensor) -> torch.Tensor | None:
    """``x`` (float in [0, 1]) as uint8 0-255 when dividing that by 255 gives ``x`` back exactly, else ``None``."""
    q = (x * 255.0).round_().to(torch.uint8)
    return q if torch.equal(q.to(torch.float32).div_(255.0), x) else None


def folder_names(class_names: tuple[str, ...]) -> list[str]:
    """One folder name per class that sorts in class order: the names themselves when they already do and
    are safe file names, else ``{index}-{name}`` with the index zero-padded."""
    safe = [re.sub(r"[^\w.+-]", "_", name) or "_" for name in class_names]
    if safe == list(class_names) and safe == sorted(safe) and len(set(safe)) == len(safe) \
            and not any(name.startswith(".") for name in safe):
        return safe
    width = len(str(len(class_names) - 1))
    return [f"{i:0{width}d}-{name}" for i, name in enumerate(safe)]


def write_png(image: torch.Tensor, path: Path) -> None:
    """One uint8 ``C x H x W`` image as a PNG (grey for one channel, RGB for three)."""
    pixels = image[0].numpy() if image.shape[0] == 1 else image.permute(1, 2, 0).contiguous().numpy()
    Image.fromarray(pixels, mode="L" if image.shape[0] == 1 else "RGB").save(path, format="PNG")


def export_png(data: ImageData, out: Path, batch_size: int = 256) -> None:
    """Write ``data`` as an image folder under ``out``: written into ``OUT.partial`` under its lock (a second
    export to the same folder stops with :class:`~alva.tracking.lock.RunFolderBusy`, naming the first), then
    renamed into place; an export killed half-way leaves only ``OUT.partial``, which the next one clears."""
    if data.task != "multiclass":
        raise DataError(f"{data.source}: an image folder holds one class per image; export multi-label data as npz")
    names = folder_names(data.class_names)
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    lock = acquire(partial, f"data export --out {out}")
    try:
        _clear(partial, keep=LOCK_FILE)
        _write_classes(data, partial, names, batch_size)
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise FileExistsError(f"{out} was written by another process during this export; choose a new folder")
        if out.exists():
            out.rmdir()
        os.replace(partial, out)
        (out / LOCK_FILE).unlink()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        lock.release()


def _clear(folder: Path, keep: str) -> None:
    for child in folder.iterdir():
        if child.name != keep:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def _write_classes(data: ImageData, folder: Path, names: list[str], batch_size: int) -> None:
    for name in names:
        (folder / name).mkdir()
    width = len(str(len(data) - 1))
    start = 0
    for xb, yb in data.loader(batch_size):
        q = as_uint8(xb)
        if q is None:
            raise DataError(f"{data.source}: images are not 8-bit (multiples of 1/255), so PNG would change them; "
                            "export as npz")
        for offset, (image, label) in enumerate(zip(q, yb.tolist(), strict=True)):
            write_png(image, folder / names[label] / f"{start + offset:0{width}d}.png")
        start += len(xb)


def export_npz(data: ImageData, out: Path) -> None:
    """Write ``data`` as ``out`` (an ``.npz`` of ``x``, uint8 when exact else float32, and ``y``)."""
    x, y = data.tensors()
    q = as_uint8(x)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, x=(q if q is not None else x).numpy(), y=y.numpy())
    atomic_write_bytes(out, buffer.getvalue())


def export(spec: str | ImageData, split: str = "test", out: str | os.PathLike = "export", format: str = "png",
           **load_options) -> Path:
    """Write the ``split`` of ``spec`` (or a loaded :class:`ImageData`) as ``format`` to ``out``.

    ``"png"``: an image folder, one subfolder per class (``out`` must not exist or be empty); ``"npz"``: one
    ``.npz`` file. ``alva.data.load(out)`` gives back bit-identical images and labels (in class order for
    PNG, see the module). Returns ``out``.

    Args:
        spec: A data spec for :func:`alva.data.load`, or a data set already loaded (``split`` is then not used).
        split: The split to export.
        out: The folder (``"png"``) or ``.npz`` file (``"npz"``) to write.
        format: ``"png"`` or ``"npz"``.
        **load_options: Passed to :func:`alva.data.load` (e.g. ``resize``, ``root``).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; expected one of {FORMATS}")
    target = Path(out)
    if format == "png" and target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} exists and is not an empty folder; choose a new folder")
    if format == "npz" and target.suffix != ".npz":
        raise ValueError(f"an npz export is written to a FILE.npz, got {target}")
    data = spec if isinstance(spec, ImageData) else load(spec, split, **load_options)
    if format == "png":
        export_png(data, target)
    else:
        export_npz(data, target)
    return target


__all__ = ["FORMATS", "as_uint8", "export", "export_npz", "export_png", "folder_names", "write_png"]
