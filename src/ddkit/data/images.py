"""In-memory labelled image sets: pixels in [0, 1], NCHW float32, with class names and stats."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property

import torch

from ddkit.errors import DDKitError


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor  # (N, C, H, W) float32, pixel space (real data in [0, 1])
    labels: torch.Tensor  # (N,) int64
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per-channel normalisation stats of the source dataset
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"images {tuple(self.images.shape)} and labels {tuple(self.labels.shape)} do not match"
            )

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def class_counts(self) -> torch.Tensor:
        return torch.bincount(self.labels, minlength=self.num_classes)

    def indices_of(self, label: int) -> torch.Tensor:
        return torch.nonzero(self.labels == label).flatten()

    def load(self, indices: torch.Tensor) -> torch.Tensor:
        """The images at `indices`, float32 NCHW in [0, 1]: how every stage reads real pixels."""
        return self.images[indices]

    def subset(self, indices: torch.Tensor) -> "ImageSet":
        return ImageSet(self.images[indices], self.labels[indices], self.class_names, self.mean, self.std)

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


@dataclass(frozen=True)
class DataSplits:
    """Train (what methods distil), val (what anything that chooses may look at), test (reported once)."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet

    @cached_property
    def fingerprint(self) -> str:
        """Content hash of the training split: identifies the data a teacher was trained on."""
        digest = hashlib.sha256(self.train.images.numpy().tobytes())
        digest.update(self.train.labels.numpy().tobytes())
        return f"{self.name}-{len(self.train)}-{digest.hexdigest()[:12]}"


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    mean = images.mean(dim=(0, 2, 3))
    std = images.std(dim=(0, 2, 3))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
