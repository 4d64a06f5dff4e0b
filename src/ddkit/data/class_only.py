"""A dataset known only by its class list: no training images, for data-free methods (PRISM-DFKD).

The classes are a shipped or YAML class list (ImageNet WordNet ids, `imagenet1k` by default), in
the list's sorted order, which is an ImageNet-1k model's output order; the normalisation is
ImageNet's, the stats torchvision's pretrained classifiers expect. With a root, the test split is
ROOT/val/<wnid>/... (an ImageNet val tree), so students are scored on real images while synthesis
and teachers never see one; ROOT/train is never opened. Without a root the test split is empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from ddkit.data.class_lists import IMAGENET, load_class_list
from ddkit.data.folder_index import load_index
from ddkit.data.image_folder import folder_set
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEST_SPLIT = "val"


def load_class_only(
    classes: Optional[str], image_size: int, root: Optional[Path] = None, skip_unreadable: bool = False,
) -> tuple[ImageSet, ImageSet, dict[str, Any]]:
    """(empty train, test from ROOT/val or empty, facts) for the classes of `classes` at `image_size` px."""
    if image_size < 1:
        raise DDKitError(f"image_size must be a positive number of pixels, got {image_size}")
    class_names = sorted(load_class_list(classes or IMAGENET).wnids)
    stats = (IMAGENET_MEAN, IMAGENET_STD)
    train = empty_set(class_names, image_size, stats)
    if root is None:
        return train, train, {"data_free": True, "test_images": 0}
    test_dir = Path(root) / TEST_SPLIT
    missing = [name for name in class_names if not (test_dir / name).is_dir()]
    if missing:
        raise DDKitError(f"{test_dir} has no folder {missing[0]!r} ({len(missing)} of {len(class_names)} classes missing); "
                         f"point --data-root at an ImageNet tree whose {TEST_SPLIT}/ holds one folder per class, or leave it out")
    index = load_index(test_dir, class_names, skip_unreadable)
    test = folder_set(test_dir, index, image_size, "RGB", stats)
    return train, test, {"data_free": True, "test_images": len(test), "skipped_unreadable": {TEST_SPLIT: index.skipped}}


def empty_set(class_names: list[str], image_size: int, stats: tuple) -> ImageSet:
    """No images, but the classes, geometry and normalisation every stage reads from a training split."""
    return ImageSet(torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long),
                    tuple(class_names), *stats)
