"""Labelled image sets whose pixels come from a storage, read as float32 NCHW in [0, 1].

Two storages: `TensorPixels`, an in-memory tensor (Fashion-MNIST, arrays, anything small; uint8
is kept as uint8 and divided by 255 on reading), and `ddkit.data.folder_index.FolderPixels`, an
index of image files decoded on demand. Stages read pixels only through `ImageSet.load` (a few
images), `ImageSet.batches` (a whole split, batch-wise, with DataLoader workers for folder sets)
and `ImageSet.sample` (a seeded sample of a class), so nothing holds every pixel of a large set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Hashable, Iterator, Optional, Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from ddkit.errors import DDKitError

HASH_CHUNK = 4096  # images converted to float per step while fingerprinting an in-memory set


class Pixels(Protocol):
    """Where an ImageSet's pixels live: `read` returns float32 NCHW in [0, 1]."""

    streams: bool  # True: decoding is costly enough to spread over DataLoader workers

    @property
    def image_shape(self) -> tuple[int, int, int]: ...

    @property
    def key(self) -> Hashable: ...  # names these pixels within one process (feature caches)

    def __len__(self) -> int: ...

    def read(self, indices: torch.Tensor) -> torch.Tensor: ...

    def take(self, indices: torch.Tensor) -> "Pixels": ...

    def hash_into(self, digest: Any) -> None: ...


@dataclass(frozen=True)
class TensorPixels:
    data: torch.Tensor  # (N, C, H, W): uint8 (read as x / 255) or float32 (read as it is)
    streams = False

    def __post_init__(self) -> None:
        if self.data.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.data.shape)}")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.data.shape[1:])  # type: ignore[return-value]

    @property
    def key(self) -> Hashable:
        return self.data.data_ptr(), tuple(self.data.shape), self.data.dtype

    def __len__(self) -> int:
        return self.data.shape[0]

    def read(self, indices: torch.Tensor) -> torch.Tensor:
        return unit_float(self.data[indices])

    def take(self, indices: torch.Tensor) -> "TensorPixels":
        return TensorPixels(self.data[indices])

    def hash_into(self, digest: Any) -> None:
        # Chunk by chunk, the bytes of the whole float tensor: the fingerprint of every set made
        # before pixels were kept as uint8, so cached teachers stay valid.
        for chunk in self.data.split(HASH_CHUNK):
            digest.update(unit_float(chunk).numpy().tobytes())


def unit_float(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 as float32 / 255 (the same bytes as converting the whole array at once); floats as they are."""
    return pixels.float().div_(255) if pixels.dtype == torch.uint8 else pixels.float()


@dataclass(frozen=True)
class ImageSet:
    pixels: Pixels  # a (N, C, H, W) tensor is accepted and kept as TensorPixels
    labels: torch.Tensor  # (N,) int64
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per-channel normalisation stats of the source dataset
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if isinstance(self.pixels, torch.Tensor):
            object.__setattr__(self, "pixels", TensorPixels(self.pixels))
        if len(self.pixels) != self.labels.shape[0]:
            raise ValueError(f"{len(self.pixels)} images and labels {tuple(self.labels.shape)} do not match")

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.pixels.image_shape

    @property
    def images(self) -> torch.Tensor:
        """Every image at once, for in-memory sets only (tests, small tools); stages use load/batches/sample."""
        if self.pixels.streams:
            raise DDKitError("this image set is read from disk on demand; read it with load(), batches() or sample()")
        return self.load(torch.arange(len(self)))

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def indices_of(self, label: int) -> torch.Tensor:
        return torch.nonzero(self.labels == label).flatten()

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at `indices`, float32 NCHW in [0, 1]: how every stage reads a few real pixels."""
        return self.pixels.read(torch.as_tensor(indices, dtype=torch.long))

    def batches(
        self, batch_size: int, indices: Optional[torch.Tensor] = None, workers: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(indices, images, labels) for consecutive chunks of `indices` (default: the whole set, in
        order). Folder sets decode in `workers` DataLoader processes; the tensors do not depend on it."""
        order = torch.arange(len(self)) if indices is None else torch.as_tensor(indices, dtype=torch.long)
        chunks = order.split(batch_size)
        if workers == 0 or not self.pixels.streams:
            for chunk in chunks:
                yield chunk, self.pixels.read(chunk), self.labels[chunk]
            return
        loader = DataLoader(_Chunks(self.pixels, chunks), batch_size=None, num_workers=workers)
        for chunk, images in zip(chunks, loader):
            if isinstance(images, str):  # a worker's DDKitError, passed back as its message
                raise DDKitError(images)
            yield chunk, images, self.labels[chunk]

    def sample(self, label: int, n: int, seed: int) -> torch.Tensor:
        """Indices of a seeded random sample of `n` images of class `label` (all of them, shuffled, if it has fewer)."""
        members = self.indices_of(label)
        generator = torch.Generator().manual_seed(seed)
        return members[torch.randperm(len(members), generator=generator)[:n]]

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        return ImageSet(self.pixels.take(indices), self.labels[indices], self.class_names, self.mean, self.std)

    def check_ipc(self, ipc: int) -> None:
        counts = self.class_counts()
        smallest = int(counts.min())
        name = self.class_names[int(counts.argmin())]
        if smallest == 0:
            raise DDKitError(
                f"IPC {ipc} is not possible: class {name!r} has no training images; add images of it or remove the class"
            )
        if ipc < 1 or ipc > smallest:
            raise DDKitError(
                f"IPC {ipc} is not possible: the smallest class has {smallest} training images ({name!r}); "
                f"choose an IPC from 1 to {smallest}"
            )


class _Chunks(Dataset):
    """One item per batch, so a worker decodes a whole batch and returns it as one tensor."""

    def __init__(self, pixels: Pixels, chunks: tuple[torch.Tensor, ...]) -> None:
        self.pixels, self.chunks = pixels, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor | str:
        try:
            return self.pixels.read(self.chunks[i])
        except DDKitError as err:
            # DataLoader re-raises a worker's exception with its traceback in the message; pass
            # the one-line message back instead, for the main process to raise.
            return str(err)


@dataclass(frozen=True)
class DataSplits:
    """Train (what methods distil), val (what anything that chooses may look at), test (reported once)."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    meta: dict[str, Any] = field(default_factory=dict)  # facts about the data worth a manifest (skipped files)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the training split (pixels in memory; paths, sizes and mtimes for folder sets)
        and its labels: identifies the data a teacher was trained on."""
        digest = hashlib.sha256()
        self.train.pixels.hash_into(digest)
        digest.update(self.train.labels.numpy().tobytes())
        return f"{self.name}-{len(self.train)}-{digest.hexdigest()[:12]}"


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
