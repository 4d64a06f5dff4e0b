"""Real datasets, the validation split, augmentation and the distilled-set format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from ddkit.data.arrays import load_arrays
from ddkit.data.class_only import load_class_only
from ddkit.data.distilled import DistilledSet
from ddkit.data.fashion_mnist import load_fashion_mnist
from ddkit.data.image_folder import load_image_folder
from ddkit.data.images import DataSplits, ImageSet
from ddkit.data.splits import carve_validation
from ddkit.errors import DDKitError
from ddkit.registry import Registry


@dataclass(frozen=True)
class DatasetConfig:
    name: str = "fashion-mnist"
    root: Optional[str] = None  # directory (fashion-mnist, image-folder; class-list: a tree whose val/ is the test) or .npz (arrays)
    val_size: int = 5000
    val_seed: int = 0
    image_size: Optional[int] = None  # image-folder, class-list (required): short-side resize + centre crop to this many pixels
    grayscale: bool = False  # image-folder only
    skip_unreadable: bool = False  # image-folder only: leave out (and count) files whose header does not read
    train_per_class: Optional[int] = None  # keep only the first N training images per class (tiny runs)
    # A class list (imagenet1k, imagenette, imagewoof, imagenet100, or a .yaml): image-folder keeps these
    # class folders; class-list takes them as its classes (default imagenet1k)
    classes: Optional[str] = None


# A loader returns (train, test, facts worth recording in a manifest).
DATASETS: Registry[Callable[[DatasetConfig], tuple[ImageSet, ImageSet, dict[str, Any]]]] = Registry("dataset")
DATASETS.register("fashion-mnist")(lambda cfg: (*load_fashion_mnist(Path(cfg.root) if cfg.root else None), {}))
DATASETS.register("arrays")(lambda cfg: (*load_arrays(Path(_require_root(cfg))), {}))
DATASETS.register("image-folder")(
    lambda cfg: load_image_folder(Path(_require_root(cfg)), _require_image_size(cfg), grayscale=cfg.grayscale,
                                  skip_unreadable=cfg.skip_unreadable, classes=cfg.classes)
)
# No training images at all: data-free methods only (ddkit.data.class_only).
DATASETS.register("class-list")(
    lambda cfg: load_class_only(cfg.classes, _require_image_size(cfg), Path(cfg.root) if cfg.root else None, cfg.skip_unreadable)
)


def _require_root(cfg: DatasetConfig) -> str:
    if not cfg.root:
        raise DDKitError(f"dataset {cfg.name!r} needs a root; pass --data-root PATH")
    return cfg.root


def _require_image_size(cfg: DatasetConfig) -> int:
    if cfg.image_size is None:
        raise DDKitError(f"dataset {cfg.name!r} needs an image size (short side resized, then centre-cropped); "
                         "pass --dataset.image_size=N or set image_size under dataset: in the config")
    return cfg.image_size


def load_dataset(cfg: DatasetConfig) -> DataSplits:
    """The splits of `cfg`; the validation carve and train_per_class pick indices, so a folder set
    decodes nothing here."""
    train, test, facts = DATASETS.get(cfg.name)(cfg)
    if facts.get("data_free"):  # no training images, so nothing to carve a validation split from
        return DataSplits(cfg.name, train, train, test, facts)
    train, val = carve_validation(train, cfg.val_size, cfg.val_seed)
    if cfg.train_per_class is not None:
        keep = torch.cat([train.indices_of(c)[: cfg.train_per_class] for c in range(train.num_classes)])
        train = train.subset(keep.sort().values)
    return DataSplits(cfg.name, train, val, test, facts)


__all__ = ["DATASETS", "DataSplits", "DatasetConfig", "DistilledSet", "ImageSet", "load_dataset"]
