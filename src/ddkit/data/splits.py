"""Deterministic, class-stratified validation split carved from the training set."""

from __future__ import annotations

import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError


def carve_validation(train: ImageSet, val_size: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split `train` into (train, val) with `val_size` images spread evenly over the classes."""
    if val_size <= 0:
        raise DDKitError(f"val_size must be positive, got {val_size}")
    counts = train.class_counts()
    per_class = [val_size // train.num_classes + (c < val_size % train.num_classes) for c in range(train.num_classes)]
    if any(take >= int(n) for take, n in zip(per_class, counts)):
        raise DDKitError(f"val_size {val_size} leaves a class with no training images; choose a smaller one")
    generator = torch.Generator().manual_seed(seed)
    val_index = []
    for label, take in enumerate(per_class):
        members = train.indices_of(label)
        val_index.append(members[torch.randperm(len(members), generator=generator)[:take]])
    val_mask = torch.zeros(len(train), dtype=torch.bool)
    val_mask[torch.cat(val_index)] = True
    return train.subset(torch.nonzero(~val_mask).flatten()), train.subset(torch.nonzero(val_mask).flatten())
