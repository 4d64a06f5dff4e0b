"""Stored soft labels at a fraction of the FKD format's size.

FKD (Shen & Xing 2022, used by SRe2L) stores, per image and epoch, fp16 logits of every class
plus the crop coordinates and flip. Here, per image and epoch, only the teacher's top-k
probabilities at the preset's temperature are kept, as 8-bit log-probabilities (quantised
linearly between 0 and the lowest value kept in the whole record), with their class indices
bit-packed; the rest of the probability mass is spread evenly over the other classes.
No augmentation parameters are stored at all: the student's training run draws its batches and
augmentations from a generator seeded by its seed (`training.epoch_batches`), so recording
replays that exact stream and training later sees the very images that were labelled.

    bytes / image-epoch = k · (1 + ⌈log2 C⌉ / 8)      (FKD: 2·C + 16 + 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.progress import steps
from ddkit.runs import atomic_write_tensors, read_tensors
from ddkit.training import TrainRecipe, epoch_batches

LOG_FLOOR = -16.0  # no log-probability is stored below this (e^-16 ≈ 1e-7)


def index_bits(num_classes: int) -> int:
    return max(1, math.ceil(math.log2(num_classes)))


def bytes_per_image_epoch(num_classes: int, top_k: int) -> float:
    return top_k * (1 + index_bits(num_classes) / 8)


def fkd_bytes_per_image_epoch(num_classes: int) -> float:
    """fp16 logits of every class + four fp32 crop coordinates + a flip flag."""
    return 2 * num_classes + 16 + 1


def pack_indices(indices: torch.Tensor, bits: int) -> torch.Tensor:
    """Non-negative ints < 2**bits → a uint8 bit stream (little-endian bit order per value)."""
    flat = indices.reshape(-1).to(torch.int64).numpy()
    unpacked = ((flat[:, None] >> np.arange(bits)) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(unpacked.reshape(-1), bitorder="little"))


def unpack_indices(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    unpacked = np.unpackbits(packed.numpy(), bitorder="little")[: count * bits].reshape(count, bits).astype(np.int64)
    return torch.from_numpy((unpacked << np.arange(bits)).sum(1))


def quantise_log_probs(log_probs: torch.Tensor, floor: float) -> torch.Tensor:
    return ((log_probs.clamp(floor, 0) / floor) * 255).round().to(torch.uint8)


def dequantise_log_probs(codes: torch.Tensor, floor: float) -> torch.Tensor:
    return codes.float() / 255 * floor


@dataclass
class StoredLabels:
    """Top-k soft labels for every (epoch, image) of one student's training run."""

    codes: torch.Tensor  # uint8 [epochs, images, k] quantised log-probabilities
    packed_indices: torch.Tensor  # uint8 bit stream of the [epochs, images, k] class indices
    num_classes: int
    temperature: float
    floor: float  # the quantisation range is [floor, 0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.codes.shape)

    def target_log_probs(self, epoch: int, index: torch.Tensor) -> torch.Tensor:
        """Dense target log-probabilities [B, C] at the stored temperature."""
        epochs, images, k = self.shape
        indices = self.indices.view(epochs, images, k)[epoch][index.cpu()]
        top = dequantise_log_probs(self.codes[epoch][index.cpu()], self.floor).exp()  # [B, k]
        rest = (1 - top.sum(1, keepdim=True)).clamp_min(1e-8) / max(1, self.num_classes - k)
        probs = rest.expand(len(index), self.num_classes).clone()
        probs.scatter_(1, indices, top)
        return (probs / probs.sum(1, keepdim=True)).log().to(index.device)

    @cached_property
    def indices(self) -> torch.Tensor:
        """Class indices, unpacked once, flat in [epochs, images, k] order."""
        return unpack_indices(self.packed_indices, index_bits(self.num_classes), self.codes.numel())

    @property
    def nbytes(self) -> int:
        return self.codes.numel() + self.packed_indices.numel()

    def save(self, path: Path) -> None:
        meta = {"num_classes": str(self.num_classes), "temperature": str(self.temperature), "floor": repr(self.floor)}
        atomic_write_tensors(path, {"codes": self.codes, "indices": self.packed_indices}, meta)

    @classmethod
    def load(cls, path: Path) -> "StoredLabels":
        tensors, meta = read_tensors(path)
        return cls(tensors["codes"], tensors["indices"], int(meta["num_classes"]), float(meta["temperature"]), float(meta["floor"]))


@torch.no_grad()
def record_soft_labels(
    teacher: nn.Module, data: ImageSet, recipe: TrainRecipe, seed: int, temperature: float, top_k: int,
    progress: Optional[Progress] = None,
) -> StoredLabels:
    """Replay the batches `fit(…, recipe, seed)` will draw and keep the teacher's top-k at T."""
    teacher.eval()
    device = module_device(teacher)
    k = min(top_k, data.num_classes)
    epochs = recipe.epochs_for(len(data), data.num_classes)
    values = torch.zeros(epochs, len(data), k)
    indices = torch.zeros(epochs, len(data), k, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    with steps(progress, f"record soft labels (top-{k})", epochs, unit="epoch") as bar:
        for epoch in range(epochs):
            for index, x, _mix in epoch_batches(data, recipe, generator):  # the teacher labels the mixed images themselves
                log_probs = F.log_softmax(teacher(x.to(device)) / temperature, dim=1).cpu()
                top = log_probs.topk(k, dim=1)
                values[epoch, index] = top.values
                indices[epoch, index] = top.indices
            bar.advance()
    floor = max(LOG_FLOOR, float(values.min()))
    codes = quantise_log_probs(values, floor)
    return StoredLabels(codes, pack_indices(indices, index_bits(data.num_classes)), data.num_classes, temperature, floor)
