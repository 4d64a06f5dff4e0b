"""Deterministic, class-stratified validation split carved from the training set."""

from __future__ import annotations

import torch

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError


def carve_validation(train: ImageSet, val_size: int, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Split `train` into (train, val) with `val_size` images spread evenly over the classes."""
    if val_size <= 0:
        raise DDKitError(f"val_size must be positive, got {val_size}")
    counts = [int(n) for n in train.class_counts()]
    per_class = [val_size // train.num_classes + (c < val_size % train.num_classes) for c in range(train.num_classes)]
    starved = next((c for c, (take, n) in enumerate(zip(per_class, counts)) if take >= n), None)
    if starved is not None:
        raise DDKitError(_starved_class_message(val_size, train.class_names, counts, starved))
    generator = torch.Generator().manual_seed(seed)
    val_index = []
    for label, take in enumerate(per_class):
        members = train.indices_of(label)
        val_index.append(members[torch.randperm(len(members), generator=generator)[:take]])
    val_mask = torch.zeros(len(train), dtype=torch.bool)
    val_mask[torch.cat(val_index)] = True
    return train.subset(torch.nonzero(~val_mask).flatten()), train.subset(torch.nonzero(val_mask).flatten())


def largest_val_size(counts: list[int]) -> int:
    """The largest val_size that leaves every class a training image (0 or less: none does).

    Class c gives up val_size // K images, plus one while c < val_size % K, so the base share
    can grow up to the smallest class's spare images, and the remainder up to the first class
    that has no spare image beyond that share.
    """
    spare = [n - 1 for n in counts]
    share = min(spare)
    return len(counts) * share + spare.index(share)


def _starved_class_message(val_size: int, class_names: tuple[str, ...], counts: list[int], starved: int) -> str:
    largest = largest_val_size(counts)
    if largest < 1:
        smallest = counts.index(min(counts))
        have = "has no training images" if counts[smallest] == 0 else "has only one training image"
        return (f"val_size {val_size} is not possible: class {class_names[smallest]!r} {have}, so no val_size can leave "
                "it one; add images of it or remove the class")
    return (f"val_size {val_size} leaves class {class_names[starved]!r} with no training images "
            f"(it has {counts[starved]}); choose a val_size of at most {largest}")
