"""Intra-class diversity: mean pairwise cosine similarity of features within each class.

Features come from fixed extractors that took no part in synthesis (PRISM reports the same
statistic; lower means more diverse). Each set's number stands next to the same number for a
fixed, seeded sample of real training images of each class, so "0.62" can be read as "closer to
or farther from real data than…".
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from ddkit.data.distilled import DistilledSet
from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.models.teachers import Teacher
from ddkit.runs import atomic_write_json, read_json
from ddkit.seeds import item_seed

REAL_SAMPLE = 200  # real images per class for the reference number
CHUNK = 500  # images per forward pass


def mean_pairwise_cosine(features: torch.Tensor) -> float:
    """Mean cosine similarity over distinct pairs (nan for fewer than two images)."""
    if len(features) < 2:
        return float("nan")
    unit = F.normalize(features.flatten(1).double(), dim=1)
    similarity = unit @ unit.T
    n = len(features)
    return float((similarity.sum() - similarity.diagonal().sum()) / (n * (n - 1)))


@torch.no_grad()
def class_cosines(extractor: Teacher, chunks: Iterable[torch.Tensor], labels: torch.Tensor, num_classes: int) -> list[float]:
    """Per class, the mean pairwise cosine of the features of `chunks` (the images, batch by batch)."""
    model = extractor.model.eval()
    device = module_device(model)
    features = torch.cat([model.features(chunk.to(device)).cpu() for chunk in chunks])
    return [mean_pairwise_cosine(features[labels == c]) for c in range(num_classes)]


def real_reference(train: ImageSet, per_class: int = REAL_SAMPLE, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(item_seed(seed, "diversity-reference"))
    picks = []
    for c in range(train.num_classes):
        members = train.indices_of(c)
        picks.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return train.subset(torch.cat(picks))


def set_diversity(distilled: DistilledSet, train: ImageSet, extractor: Teacher) -> dict:
    real = real_reference(train)
    decoded = distilled.decoded()  # the images students train on
    synthetic = class_cosines(extractor, decoded.images.split(CHUNK), decoded.labels, train.num_classes)
    reference = class_cosines(extractor, (images for _, images, _ in real.batches(CHUNK)), real.labels, train.num_classes)
    finite = [v for v in synthetic if v == v]
    return {
        "extractor": extractor.label, "ipc": distilled.ipc, "real_images_per_class": REAL_SAMPLE,
        "per_class": [round(v, 4) for v in synthetic], "real_per_class": [round(v, 4) for v in reference],
        "mean": round(sum(finite) / len(finite), 4) if finite else None,
        "real_mean": round(sum(reference) / len(reference), 4),
    }


def cached_per_extractor(set_dir: Path, kind: str, extractors: dict[str, Teacher],
                         compute: Callable[[Teacher], dict]) -> list[dict]:
    """One record per named extractor in `set_dir/<kind>/<name>.json`, reused while the stored
    extractor label (recipe + cache hash) still names the same network."""
    records = []
    for name, extractor in extractors.items():
        path = Path(set_dir) / kind / f"{name}.json"
        if path.exists() and read_json(path).get("extractor") == extractor.label:
            records.append(read_json(path))
            continue
        record = {"name": name, **compute(extractor)}
        atomic_write_json(path, record)
        records.append(record)
    return records


def measure_diversity(distilled: DistilledSet, set_dir: Path, train: ImageSet, extractors: dict[str, Teacher]) -> list[dict]:
    """Compute (or reuse) the diversity record of a set for each named extractor."""
    return cached_per_extractor(set_dir, "diversity", extractors, lambda e: set_diversity(distilled, train, e))
