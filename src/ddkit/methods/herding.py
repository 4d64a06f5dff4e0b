"""Herding (Welling, ICML 2009; the coreset baseline of Zhao et al., ICLR 2021 "DC").

Per class, greedily pick the real image whose feature brings the running mean of the picked
set closest to the class mean. Features: the penultimate layer of a teacher trained on the
training split (the DC baseline uses a ConvNet trained on the whole data).

Two options go beyond the baseline. `kernel: rbf` is kernel herding (Chen, Welling & Smola, UAI
2010): each pick greedily lowers the MMD between the picked set and the class under an RBF kernel,
so the set matches the class's distribution, not only its mean. `space: soft-labels` herds the
teacher's class probabilities at a temperature instead of its features: the set then spans the
teacher's confusions with other classes, which is what a soft-label student learns from (on
Fashion-MNIST it does worse than herding features; benchmarks/results/kd-sets-choose.md).
`factor: f` herds ipc·f² images and stores them f² to an image at 1/f resolution (IDC's
multi-formation, ddkit.data.formation): more, smaller real images in the same pixels.

| paper          | code                      |
|----------------|---------------------------|
| φ(x)           | `features` (teacher.features) |
| μ_c            | `target`                  |
| S_k            | `chosen`, `picked_sum`    |
| k(x, x')       | `rbf_gram` (median-distance bandwidth) |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from ddkit.config import ADDED_OPTION
from ddkit.data.distilled import DistilledSet
from ddkit.methods.base import (
    Method,
    SynthesisContext,
    real_images_needed,
    register_method,
    subset_as_distilled,
)
from ddkit.methods.features import class_features, embed, softened_probabilities


@dataclass(frozen=True)
class HerdingConfig:
    teacher: str = "convnet-bn"  # teacher recipe whose penultimate features are herded
    space: Literal["features", "soft-labels"] = "features"  # herd the features, or the teacher's probabilities at `temperature`
    temperature: float = 4.0  # soft-labels space: the softmax temperature (the soft-kd preset's T)
    kernel: Literal["linear", "rbf"] = "linear"  # linear: match the class mean; rbf: kernel herding, match the class distribution
    bandwidth: float = 1.0  # rbf: the kernel's σ² as a multiple of the class's median squared distance
    factor: int = field(default=1, metadata=ADDED_OPTION)  # multi-formation (IDC): herd ipc·factor² images, store factor² per image

    def __post_init__(self) -> None:
        if self.temperature <= 0 or self.bandwidth <= 0:
            raise ValueError(f"temperature and bandwidth must be positive, got {self.temperature} and {self.bandwidth}")


def herding_order(features: torch.Tensor, count: int) -> list[int]:
    """Indices (into `features`) of the first `count` herding picks; deterministic."""
    target = features.mean(0)
    picked_sum = torch.zeros_like(target)
    available = torch.ones(len(features), dtype=torch.bool)
    chosen: list[int] = []
    for k in range(1, count + 1):
        gap = ((target - (picked_sum + features) / k) ** 2).sum(1)
        gap[~available] = float("inf")
        index = int(gap.argmin())
        chosen.append(index)
        available[index] = False
        picked_sum += features[index]
    return chosen


def rbf_gram(points: torch.Tensor, bandwidth: float = 1.0) -> torch.Tensor:
    """exp(−‖a − b‖² / 2σ²) between every pair of `points`, σ² `bandwidth` times the median squared
    distance of distinct pairs."""
    squared = torch.cdist(points, points).pow(2)
    rows, cols = torch.triu_indices(len(points), len(points), offset=1)
    median = squared[rows, cols].median().clamp_min(1e-12) if len(points) > 1 else torch.tensor(1.0)
    return torch.exp(-squared / (2 * bandwidth * median))


def kernel_herding_order(gram: torch.Tensor, count: int) -> list[int]:
    """Indices of the first `count` picks that greedily minimise the MMD between the picked points
    and all of them under the kernel `gram`. With a linear gram the picks are `herding_order`'s in
    exact arithmetic; `herding_order` keeps its own loop because the gram form rounds differently and
    changes one Fashion-MNIST class's IPC-50 picks of the published baseline."""
    target = gram.mean(1)  # mean embedding of the class, evaluated at each point
    picked_similarity = torch.zeros_like(target)
    available = torch.ones(len(gram), dtype=torch.bool)
    chosen: list[int] = []
    for k in range(1, count + 1):
        # MMD² of the picks plus x, less the terms every candidate shares
        score = -2 * target / k + (2 * picked_similarity + gram.diagonal()) / k**2
        score[~available] = float("inf")
        index = int(score.argmin())
        chosen.append(index)
        available[index] = False
        picked_similarity += gram[index]
    return chosen


def herded_order(points: torch.Tensor, count: int, kernel: Literal["linear", "rbf"], bandwidth: float = 1.0) -> list[int]:
    """The first `count` picks of mean herding (linear) or kernel herding (rbf) of `points`."""
    return herding_order(points, count) if kernel == "linear" else kernel_herding_order(rbf_gram(points, bandwidth), count)


@register_method("herding")
class Herding(Method):
    config_class = HerdingConfig

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        cfg = self.config
        count = real_images_needed(ctx.splits.train, ctx.ipc, cfg.factor)
        teacher = ctx.teacher(cfg.teacher)
        chosen = []
        for members, features in class_features(teacher, ctx.splits.train, ctx.progress):
            points = softened_probabilities(teacher, features, cfg.temperature) if cfg.space == "soft-labels" else features
            chosen.append(members[herded_order(points, count, cfg.kernel, cfg.bandwidth)])
        return subset_as_distilled(ctx.splits.train, torch.cat(chosen), {"teacher": teacher.label}, cfg.factor)


def herding_picks(ctx: SynthesisContext, classes: tuple[int, ...] | range, teacher_name: str,
                  kind: Literal["herding", "kernel-herding"], count: int = 0) -> list[torch.Tensor]:
    """Per class, the positions in its pool (`train.indices_of(c)`) of the herding coreset's `count`
    images (0: `ipc`): mean herding, or kernel herding at the median bandwidth (the `herding` method's options)."""
    train = ctx.splits.train
    features = embed(ctx.teacher(teacher_name), train, ctx.progress)
    kernel = "linear" if kind == "herding" else "rbf"
    return [torch.tensor(herded_order(features[train.indices_of(c)], count or ctx.ipc, kernel)) for c in classes]
