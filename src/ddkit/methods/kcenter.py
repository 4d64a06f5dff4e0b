"""Greedy k-center (Sener & Savarese, ICLR 2018; the coreset baseline of the DC paper).

Per class, start from the image nearest the class mean (or a seeded random one), then
repeatedly add the image farthest from every picked centre, in a teacher's feature space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ddkit.data.distilled import DistilledSet
from ddkit.methods.base import (
    Method,
    SynthesisContext,
    register_method,
    subset_as_distilled,
)
from ddkit.methods.features import class_features
from ddkit.seeds import item_seed


@dataclass(frozen=True)
class KCenterConfig:
    teacher: str = "convnet-bn"  # teacher recipe whose penultimate features set the distances
    start: Literal["mean", "random"] = "mean"  # first pick: the image nearest the class mean, or a seeded random one


def kcenter_order(features: torch.Tensor, count: int, first: int) -> list[int]:
    chosen = [first]
    nearest = torch.cdist(features, features[first : first + 1]).flatten()
    for _ in range(count - 1):
        index = int(nearest.argmax())
        chosen.append(index)
        nearest = torch.minimum(nearest, torch.cdist(features, features[index : index + 1]).flatten())
    return chosen


@register_method("kcenter")
class KCenter(Method):
    config_class = KCenterConfig

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        teacher = ctx.teacher(self.config.teacher)
        chosen = []
        for label, (members, feats) in enumerate(class_features(teacher, ctx.splits.train, ctx.progress)):
            if self.config.start == "mean":
                first = int(((feats - feats.mean(0)) ** 2).sum(1).argmin())
            else:
                first = int(torch.randint(len(feats), (1,), generator=torch.Generator().manual_seed(item_seed("kcenter", ctx.seed, label))))
            chosen.append(members[kcenter_order(feats, ctx.ipc, first)])
        return subset_as_distilled(ctx.splits.train, torch.cat(chosen), {"teacher": teacher.label})
