"""Herding (Welling, ICML 2009; the coreset baseline of Zhao et al., ICLR 2021 "DC").

Per class, greedily pick the real image whose feature brings the running mean of the picked
set closest to the class mean. Features: the penultimate layer of a teacher trained on the
training split (the DC baseline uses a ConvNet trained on the whole data).

| paper          | code                      |
|----------------|---------------------------|
| φ(x)           | `features` (teacher.features) |
| μ_c            | `target`                  |
| S_k            | `chosen`, `picked_sum`    |
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ddkit.data.distilled import DistilledSet
from ddkit.methods.base import (
    Method,
    SynthesisContext,
    register_method,
    subset_as_distilled,
)
from ddkit.methods.features import class_features


@dataclass(frozen=True)
class HerdingConfig:
    teacher: str = "convnet-bn"  # teacher recipe whose penultimate features are herded


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


@register_method("herding")
class Herding(Method):
    config_class = HerdingConfig

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        teacher = ctx.teacher(self.config.teacher)
        chosen = [members[herding_order(feats, ctx.ipc)] for members, feats in class_features(teacher, ctx.splits.train, ctx.progress)]
        return subset_as_distilled(ctx.splits.train, torch.cat(chosen), {"teacher": teacher.label})
