"""ImageNet-layout trees: ROOT/<split>/<class>/<image>; classes in sorted folder order."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ddkit.data.images import ImageSet, channel_stats
from ddkit.errors import DDKitError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
log = logging.getLogger(__name__)


def class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DDKitError(f"image folder {split_dir} does not exist; expected ROOT/<split>/<class>/<image> files")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DDKitError(f"image folder {split_dir} has no class sub-folders")
    return names


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def check_same_classes(root: Path, train_split: str, test_split: str, class_names: list[str]) -> None:
    """Labels are positions in the train class list, so the test split must hold exactly those classes."""
    train_names, test_names = set(class_names), set(class_folders(Path(root) / test_split))
    only_in = [(n, test_split) for n in sorted(test_names - train_names)] + [(n, train_split) for n in sorted(train_names - test_names)]
    if only_in:
        name, split = only_in[0]
        raise DDKitError(
            f"class folder {name!r} is only in {Path(root) / split}; {train_split} and {test_split} must hold the same class folders"
        )


def _load_image(path: Path, size: int, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            # Resize the short side, then centre-crop: the usual ImageNet evaluation geometry.
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DDKitError(f"cannot read image {path} ({err}); remove or replace it") from None
    return array[:, :, None] if array.ndim == 2 else array


def load_split(root: Path, split: str, class_names: list[str], size: int, mode: str) -> ImageSet:
    images, labels = [], []
    for label, name in enumerate(class_names):
        folder = Path(root) / split / name
        files = image_files(folder)
        if not files:
            log.warning("%s holds no images: class %r has none in the %s split", folder, name, split)
        for path in files:
            images.append(_load_image(path, size, mode))
            labels.append(label)
    if not images:
        raise DDKitError(f"image folder {Path(root) / split} holds no images")
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255)
    return ImageSet(pixels, torch.tensor(labels), tuple(class_names), (0.0,), (1.0,))


def load_image_folder(
    root: Path, image_size: int, train_split: str = "train", test_split: str = "val", grayscale: bool = False
) -> tuple[ImageSet, ImageSet]:
    """Return (train, test); test is ImageNet's `val` folder by convention, with the train classes."""
    class_names = class_folders(Path(root) / train_split)
    check_same_classes(root, train_split, test_split, class_names)
    mode = "L" if grayscale else "RGB"
    train = load_split(root, train_split, class_names, image_size, mode)
    test = load_split(root, test_split, class_names, image_size, mode)
    mean, std = channel_stats(train.images)
    return (
        ImageSet(train.images, train.labels, train.class_names, mean, std),
        ImageSet(test.images, test.labels, test.class_names, mean, std),
    )
