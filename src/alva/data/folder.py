"""Image folders in the ImageFolder layout: one subfolder per class, sorted names = class indices.

Images are PNG, JPEG or BMP files read with Pillow. The folder's channels are 3 (RGB) if any image is in
colour, else 1 (grey); each image is converted to them. Every image must have the same size unless a
``resize=(H, W)`` is given (bilinear). A folder holding ``train/`` and ``test/`` folders of that layout is
split by ``split``; otherwise the folder is one split and ``split`` is not used.

Only the image headers are read when the folder is loaded; pixels are read when a sample is asked for, so a
large folder streams through a :class:`torch.utils.data.DataLoader`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from alva.data.dataset import ImageData
from alva.data.mnist import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F")
SPLITS = ("train", "test")
# Sets whose float32 images take at most this many bytes are held in memory unless asked otherwise.
IN_MEMORY_BYTES = 1 << 30


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """One image as float32 ``C x H x W`` in [0, 1], converted to ``channels`` and resized to ``size`` (H, W).

    Raises :class:`DataError` naming ``path`` when Pillow cannot read it.
    """
    try:
        with Image.open(path) as image:
            image = image.convert("RGB" if channels == 3 else "L")
            if size is not None and image.size != (size[1], size[0]):
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err
    tensor = torch.from_numpy(pixels.copy())
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return tensor.contiguous().to(torch.float32).div_(255.0)


class ImageFiles(Dataset):
    """A map-style data set of image files and their labels, each image read when asked for.

    Args:
        paths: One file per sample.
        labels: int64 class index per sample.
        channels: 1 (grey) or 3 (RGB).
        size: ``(H, W)`` to resize to, or ``None`` to keep every image's own size.
    """

    def __init__(self, paths: list[Path], labels: torch.Tensor, channels: int, size: tuple[int, int] | None):
        self.paths, self.labels, self.channels, self.size = paths, labels, channels, size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return read_image(self.paths[index], self.channels, self.size), self.labels[index]


def class_folders(root: Path) -> list[Path]:
    """The class subfolders of ``root``, sorted by name; a :class:`DataError` when there are none."""
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders (an image folder holds one subfolder of images per class, "
                        "or train/ and test/ folders of that layout)")
    return folders


def image_files(folder: Path) -> list[Path]:
    """The image files of one class folder (PNG, JPEG, BMP, any case), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def header(path: Path) -> tuple[tuple[int, int], bool]:
    """``((H, W), colour)`` of an image from its header, without decoding its pixels."""
    try:
        with Image.open(path) as image:
            return (image.size[1], image.size[0]), image.mode not in GREY_MODES
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: unreadable image ({err})") from err


def split_root(root: Path, split: str) -> Path:
    """``root/split`` when ``root`` holds ``train/`` and ``test/`` folders, else ``root`` itself."""
    if all((root / s).is_dir() for s in SPLITS):
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r} for {root}; expected one of {SPLITS}")
        return root / split
    return root


def scan(root: Path) -> tuple[list[Path], torch.Tensor, tuple[str, ...]]:
    """Every image file under the class folders of ``root``, its class index, and the class names.

    Files are in class order, then by name; when every file is named by a number alone and no number repeats,
    in the order of those numbers."""
    folders = class_folders(root)
    paths: list[Path] = []
    labels: list[int] = []
    for index, folder in enumerate(folders):
        files = image_files(folder)
        paths.extend(files)
        labels.extend([index] * len(files))
    if not paths:
        raise DataError(f"{root}: the class folders hold no images ({', '.join(EXTENSIONS)})")
    numbers = [int(p.stem) if p.stem.isdigit() else -1 for p in paths]
    if min(numbers) >= 0 and len(set(numbers)) == len(numbers):
        # Files numbered across the whole folder (as alva.data.export writes them: sample i is i.png) are read in
        # that order, so an exported data set comes back in its source's order.
        order = sorted(range(len(paths)), key=numbers.__getitem__)
        paths, labels = [paths[i] for i in order], [labels[i] for i in order]
    return paths, torch.tensor(labels, dtype=torch.int64), tuple(f.name for f in folders)


def folder_shape(paths: list[Path], resize: tuple[int, int] | None) -> tuple[int, int, int]:
    """``(C, H, W)`` of a folder's images from their headers; mixed sizes refused unless ``resize``."""
    first_size, colour = header(paths[0])
    for path in paths[1:]:
        size, is_colour = header(path)
        colour = colour or is_colour
        if resize is None and size != first_size:
            raise DataError(f"{path}: image is {size[0]} x {size[1]} but {paths[0]} is "
                            f"{first_size[0]} x {first_size[1]}; images of mixed sizes need a resize (H, W)")
    height, width = resize if resize is not None else first_size
    return 3 if colour else 1, height, width


def load_folder(spec: str, split: str, *, resize: tuple[int, int] | None = None, stream: bool | None = None,
                num_workers: int = 0) -> ImageData:
    """An image folder (see the module) as :class:`ImageData`.

    Args:
        spec: The folder.
        split: ``"train"`` or ``"test"`` for a folder holding both; not used otherwise.
        resize: ``(H, W)`` every image is resized to; ``None`` requires one size.
        stream: Read images on demand (``True``), all at once into memory (``False``), or in memory when the
            images take at most 1 GiB as float32 (``None``).
        num_workers: Worker processes that read the images when they are loaded into memory.
    """
    root = split_root(Path(spec), split)
    paths, labels, names = scan(root)
    shape = folder_shape(paths, resize)
    samples = ImageFiles(paths, labels, shape[0], resize)
    data = ImageData(source=spec, split=split, shape=shape, class_names=names, task="multiclass",
                     labels=labels, samples=samples, origin=str(root))
    fits = len(paths) * int(np.prod(shape)) * 4 <= IN_MEMORY_BYTES
    if stream or (stream is None and not fits):
        return data
    x, y = data.tensors(num_workers=num_workers)
    return replace(data, labels=y, x=x, samples=None, _digest=[])


__all__ = ["EXTENSIONS", "IN_MEMORY_BYTES", "ImageFiles", "class_folders", "folder_shape", "header",
           "image_files", "load_folder", "read_image", "scan", "split_root"]
