"""ImageNet-layout trees: ROOT/<split>/<class>/<image>; classes in sorted folder order.

Each split is an index of its files (ddkit.data.folder_index), decoded on demand at one geometry;
the mean and std are estimated from a fixed seeded sample of STATS_SAMPLE training images (not
the whole split) and kept with the index.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import torch

from ddkit.data.class_lists import load_class_list
from ddkit.data.folder_index import EXTENSIONS, FolderIndex, FolderPixels, class_folders, index_path, load_index, write_index
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError

STATS_SAMPLE = 500  # training images the channel mean and std are estimated from
STATS_SEED = 0


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


def folder_set(split_dir: Path, index: FolderIndex, size: int, mode: str, stats: tuple) -> ImageSet:
    pixels = FolderPixels(split_dir, index.paths, index.sizes, index.mtimes, size, mode)
    return ImageSet(pixels, torch.from_numpy(index.labels), index.class_names, *stats)


def estimate_stats(train: ImageSet, sample: int = STATS_SAMPLE, seed: int = STATS_SEED) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of a seeded sample of `sample` images, summed in float64 batch by batch."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(train), generator=generator)[:sample].sort().values
    total = torch.zeros(train.image_shape[0], dtype=torch.float64)
    squares, count = torch.zeros_like(total), 0
    for _, images, _ in train.batches(100, picks):
        pixels = images.double().transpose(0, 1).flatten(1)
        total += pixels.sum(1)
        squares += (pixels**2).sum(1)
        count += pixels.shape[1]
    mean = total / count
    std = ((squares - count * mean**2) / max(1, count - 1)).clamp_min(0).sqrt()
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def train_stats(split_dir: Path, index: FolderIndex, size: int, mode: str, skip_unreadable: bool) -> tuple:
    """The channel stats of this geometry, estimated on first use and stored in the index file."""
    geometry = f"{size}-{mode}"
    if geometry not in index.stats:
        mean, std = estimate_stats(folder_set(split_dir, index, size, mode, ((0.0,), (1.0,))))
        index = replace(index, stats={**index.stats, geometry: [list(mean), list(std)]})
        write_index(index_path(split_dir, skip_unreadable), index)
    mean, std = index.stats[geometry]
    return tuple(mean), tuple(std)


def load_image_folder(
    root: Path, image_size: int, train_split: str = "train", test_split: str = "val", grayscale: bool = False,
    skip_unreadable: bool = False, classes: Optional[str] = None,
) -> tuple[ImageSet, ImageSet, dict[str, Any]]:
    """Return (train, test, facts); test is ImageNet's `val` folder by convention, with the train classes.
    With `classes` (a class list), only those class folders are read, so a full ImageNet tree serves
    its subsets. The facts count the unreadable files skipped per split."""
    if image_size < 1:
        raise DDKitError(f"image_size must be a positive number of pixels, got {image_size}")
    root = Path(root)
    class_names = class_folders(root / train_split)
    if classes:
        wanted = load_class_list(classes).wnids
        missing = [w for w in wanted if w not in class_names]
        if missing:
            raise DDKitError(f"{root / train_split} has no folder {missing[0]!r} of class list {classes} "
                             f"({len(missing)} of {len(wanted)} missing); point --data-root at a tree holding them")
        class_names = sorted(wanted)
    else:
        check_same_classes(root, train_split, test_split, class_names)
    for name in class_names:
        if not (root / test_split / name).is_dir():
            raise DDKitError(f"class folder {name!r} is missing from {root / test_split}")
    mode = "L" if grayscale else "RGB"
    indexes = {split: load_index(root / split, class_names, skip_unreadable) for split in (train_split, test_split)}
    stats = train_stats(root / train_split, indexes[train_split], image_size, mode, skip_unreadable)
    train, test = (folder_set(root / split, indexes[split], image_size, mode, stats) for split in (train_split, test_split))
    return train, test, {"skipped_unreadable": {split: index.skipped for split, index in indexes.items()}}
