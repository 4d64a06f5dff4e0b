"""Fashion-MNIST from the IDX files of Debian's `dataset-fashion-mnist` (or any directory of them)."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError

DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
# The stats used by the DC/DSA protocol (reference-numbers.md).
MEAN, STD = (0.2861,), (0.3530,)
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
HOW_TO_GET = "install them with 'apt-get install dataset-fashion-mnist' or pass --data-root DIR holding the four *-ubyte(.gz) files"


def _open(root: Path, stem: str) -> bytes:
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = root / name
        if path.exists():
            # gzip reports a bad header or CRC as OSError, but corrupt deflate data as zlib.error.
            try:
                with opener(path, "rb") as handle:
                    return handle.read()
            except (OSError, EOFError, zlib.error) as err:
                raise DDKitError(f"Fashion-MNIST file {path} is corrupt ({err}); {HOW_TO_GET}") from None
    raise DDKitError(f"Fashion-MNIST file {stem}(.gz) is missing from {root}; {HOW_TO_GET}")


def parse_idx(raw: bytes, expected_dims: int, count: int, source: str) -> np.ndarray:
    """Parse an IDX file (magic 0x0000080{dims}, big-endian dims, uint8 payload), checking sizes."""
    if len(raw) < 4 + 4 * expected_dims:
        raise DDKitError(f"{source} is truncated; {HOW_TO_GET}")
    zero, dtype_code, dims = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or dims != expected_dims:
        raise DDKitError(f"{source} has a wrong magic number (not an IDX uint8 file); {HOW_TO_GET}")
    shape = struct.unpack(">" + "I" * dims, raw[4 : 4 + 4 * dims])
    payload = raw[4 + 4 * dims :]
    if shape[0] != count or len(payload) != int(np.prod(shape)):
        raise DDKitError(
            f"{source} holds {shape[0]} items / {len(payload)} bytes, expected {count} items; {HOW_TO_GET}"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def load_fashion_mnist(root: Path | None = None) -> tuple[ImageSet, ImageSet]:
    """Return (train, test), kept as uint8 in memory and read as float32 in [0, 1]."""
    root = Path(root) if root else DEFAULT_ROOT
    if not root.is_dir():
        raise DDKitError(f"Fashion-MNIST directory {root} does not exist; {HOW_TO_GET}")
    splits = []
    for images_stem, labels_stem, count in FILES.values():
        images = parse_idx(_open(root, images_stem), 3, count, str(root / images_stem))
        labels = parse_idx(_open(root, labels_stem), 1, count, str(root / labels_stem))
        if labels.max() >= len(CLASS_NAMES):
            raise DDKitError(f"{root / labels_stem} has labels outside 0-9; {HOW_TO_GET}")
        splits.append(
            ImageSet(
                torch.from_numpy(images.copy()).unsqueeze(1),  # uint8: ImageSet.load divides by 255
                torch.from_numpy(labels.astype(np.int64)),
                CLASS_NAMES,
                MEAN,
                STD,
            )
        )
    return splits[0], splits[1]
