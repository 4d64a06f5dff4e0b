"""The index of one split of an image tree, and pixels decoded from it on demand.

ROOT/<split>/<class>/<file> is walked once, without decoding: relative path, size, mtime and
label of every image file. The index is cached in $DDKIT_CACHE/indexes (one small .npz per root,
split and unreadable-file policy) and reused while each class folder's listing (the names in it)
is unchanged; an image rewritten in place under the same name is not noticed — delete the index
file to re-read sizes and mtimes. Zero-byte files are refused at index time; with
`skip_unreadable` every file's header is checked (PIL open + verify) and unreadable ones are
left out and counted. A file that fails to decode later is a one-line error naming it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ddkit.data.images import unit_float
from ddkit.errors import DDKitError
from ddkit.runs import atomic_write_bytes, default_cache_dir

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
INDEX_FORMAT = 1  # bump when the stored fields change: older index files are then rebuilt
log = logging.getLogger(__name__)


def index_dir() -> Path:
    return default_cache_dir() / "indexes"


@dataclass(frozen=True)
class FolderIndex:
    class_names: tuple[str, ...]
    paths: np.ndarray  # (N,) bytes: "<class>/<file>" relative to the split folder, UTF-8
    labels: np.ndarray  # (N,) int64: positions in class_names
    sizes: np.ndarray  # (N,) int64 bytes
    mtimes: np.ndarray  # (N,) int64 nanoseconds
    listings: tuple[str, ...]  # per class folder: digest of the names in it (what validates a cached index)
    skipped: int  # unreadable files left out (skip_unreadable)
    stats: dict[str, Any]  # channel stats per geometry ("224-RGB"), estimated once and kept here


def class_folders(split_dir: Path) -> list[str]:
    if not split_dir.is_dir():
        raise DDKitError(f"image folder {split_dir} does not exist; expected ROOT/<split>/<class>/<image> files")
    names = sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise DDKitError(f"image folder {split_dir} has no class sub-folders")
    return names


def listing_digest(names: list[str]) -> str:
    return hashlib.sha256("\0".join(sorted(names)).encode()).hexdigest()[:16]


def index_path(split_dir: Path, skip_unreadable: bool) -> Path:
    key = f"{Path(split_dir).resolve()}\0{skip_unreadable}\0{INDEX_FORMAT}"
    return index_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def load_index(split_dir: Path, class_names: list[str], skip_unreadable: bool) -> FolderIndex:
    """The cached index of `split_dir` if its class folders list the same names, else a fresh one (cached)."""
    path = index_path(split_dir, skip_unreadable)
    cached = read_index(path)
    listings = tuple(listing_digest(os.listdir(split_dir / name)) for name in class_names)
    if cached is not None and cached.class_names == tuple(class_names) and cached.listings == listings:
        return cached
    index = build_index(split_dir, class_names, skip_unreadable)
    write_index(path, index)
    return index


def build_index(split_dir: Path, class_names: list[str], skip_unreadable: bool) -> FolderIndex:
    paths, labels, sizes, mtimes, listings, skipped = [], [], [], [], [], 0
    for label, name in enumerate(class_names):
        names = sorted(os.listdir(split_dir / name))
        listings.append(listing_digest(names))
        found = 0
        for file in names:
            if Path(file).suffix.lower() not in EXTENSIONS:
                continue
            info = os.stat(split_dir / name / file)
            if not stat.S_ISREG(info.st_mode):
                continue
            if not readable(split_dir / name / file, info.st_size, skip_unreadable):
                skipped += 1
                continue
            paths.append(f"{name}/{file}".encode())
            labels.append(label)
            sizes.append(info.st_size)
            mtimes.append(info.st_mtime_ns)
            found += 1
        if not found:
            log.warning("%s holds no images: class %r has none in the %s split", split_dir / name, name, split_dir.name)
    if not paths:
        raise DDKitError(f"image folder {split_dir} holds no images")
    if skipped:
        log.warning("%s: %d unreadable image file(s) skipped", split_dir, skipped)
    return FolderIndex(tuple(class_names), np.array(paths, dtype=np.bytes_), np.array(labels, dtype=np.int64),
                       np.array(sizes, dtype=np.int64), np.array(mtimes, dtype=np.int64), tuple(listings), skipped, {})


def readable(path: Path, size: int, skip_unreadable: bool) -> bool:
    """False for a file to skip; a zero-byte file without skip_unreadable is an error."""
    if not skip_unreadable:
        if size == 0:
            raise DDKitError(f"image {path} is empty (0 bytes); remove or replace it, or set skip_unreadable: true")
        return True
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # PIL raises many types for a damaged file (OSError, SyntaxError, struct.error…); each means "skip"
        return False
    return True


def read_index(path: Path) -> FolderIndex | None:
    """The index stored at `path`, or None when there is none or it cannot be read (it is then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            header = json.loads(str(stored["header"]))
            return FolderIndex(tuple(header["class_names"]), stored["paths"], stored["labels"], stored["sizes"],
                               stored["mtimes"], tuple(header["listings"]), int(header["skipped"]), header["stats"])
    except FileNotFoundError:
        return None
    except Exception as err:  # a damaged cache file only costs a rebuild
        log.warning("index %s is unreadable (%s); rebuilding it", path, type(err).__name__)
        return None


def write_index(path: Path, index: FolderIndex) -> None:
    header = {"class_names": list(index.class_names), "listings": list(index.listings), "skipped": index.skipped,
              "stats": index.stats}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, header=np.array(json.dumps(header)), paths=index.paths, labels=index.labels,
                        sizes=index.sizes, mtimes=index.mtimes)
    atomic_write_bytes(path, buffer.getvalue())


@dataclass(frozen=True)
class FolderPixels:
    """Pixels of indexed image files, decoded on demand at one geometry: the short side resized to
    `size` (bicubic), then a centre crop of size × size (torchvision's evaluation transform)."""

    split_dir: Path
    paths: np.ndarray  # (N,) bytes, relative to split_dir
    sizes: np.ndarray  # (N,) int64: with mtimes, what the fingerprint hashes
    mtimes: np.ndarray
    size: int
    mode: str  # "RGB" or "L"
    streams = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1 if self.mode == "L" else 3, self.size, self.size)

    @property
    def key(self) -> Hashable:
        return str(self.split_dir), self.size, self.mode, hashlib.sha256(self.paths.tobytes()).hexdigest()

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        picked = [decode_image(self.split_dir / self.paths[i].decode(), self.size, self.mode) for i in indices.tolist()]
        if not picked:
            return torch.zeros(0, *self.image_shape)
        # contiguous NCHW, as in-memory sets give: callers view() and reshape what they load
        return unit_float(torch.from_numpy(np.stack(picked)).permute(0, 3, 1, 2).contiguous())

    def take(self, indices: torch.Tensor) -> "FolderPixels":
        rows = indices.numpy()
        return FolderPixels(self.split_dir, self.paths[rows], self.sizes[rows], self.mtimes[rows], self.size, self.mode)

    def hash_into(self, digest: Any) -> None:
        digest.update(f"folder {self.size} {self.mode}\n".encode())
        for path, size, mtime in zip(self.paths.tolist(), self.sizes.tolist(), self.mtimes.tolist()):
            digest.update(b"%s\0%d\0%d\n" % (path, size, mtime))


def decode_image(path: Path, size: int, mode: str) -> np.ndarray:
    """One image file as (size, size, channels) uint8."""
    try:
        with Image.open(path) as img:
            img = img.convert(mode)
            # Resize the short side, then centre-crop: the usual ImageNet evaluation geometry.
            scale = size / min(img.size)
            img = img.resize((max(size, round(img.width * scale)), max(size, round(img.height * scale))), Image.BICUBIC)
            left, top = (img.width - size) // 2, (img.height - size) // 2
            img = img.crop((left, top, left + size, top + size))
            array = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DDKitError(f"cannot read image {path} ({err}); remove or replace it") from None
    return array[:, :, None] if array.ndim == 2 else array
