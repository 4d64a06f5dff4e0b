"""Teacher features of the training split, grouped by class (shared by the coreset methods)."""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from rich.progress import Progress

from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.models.teachers import Teacher
from ddkit.progress import steps
from ddkit.training import INFERENCE_BATCH


@torch.no_grad()
def embed(teacher: Teacher, images: ImageSet, progress: Optional[Progress] = None, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Teacher features of every image of `images`, batch by batch; kept on the teacher for the next method."""
    key = images.pixels.key
    if key not in teacher.feature_cache:
        teacher.model.eval()
        device = module_device(teacher.model)
        out = []
        with steps(progress, f"features ({teacher.config.name})", math.ceil(len(images) / batch_size), unit="chunk") as bar:
            for _, chunk, _ in images.batches(batch_size):
                out.append(teacher.model.features(chunk.to(device)).cpu())
                bar.advance()
        teacher.feature_cache[key] = torch.cat(out)
    return teacher.feature_cache[key]


def class_features(teacher: Teacher, train: ImageSet, progress: Optional[Progress] = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (training indices, features) for each class in label order."""
    features = embed(teacher, train, progress)
    for label in range(train.num_classes):
        members = train.indices_of(label)
        yield members, features[members]


@torch.no_grad()
def softened_probabilities(teacher: Teacher, features: torch.Tensor, temperature: float) -> torch.Tensor:
    """The teacher's class probabilities at `temperature` from its penultimate `features`: the
    targets a soft-label student fits."""
    head = teacher.model.final_linear()
    logits = head(features.to(head.weight.device)).cpu()
    return (logits / temperature).softmax(1)
