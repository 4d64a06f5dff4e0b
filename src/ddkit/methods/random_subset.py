"""Random real subset: IPC training images drawn uniformly from each class (the DC papers' baseline)."""

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
from ddkit.seeds import item_seed


@dataclass(frozen=True)
class RandomConfig:
    pass


@register_method("random")
class RandomSubset(Method):
    config_class = RandomConfig

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        train = ctx.splits.train
        chosen = []
        for label in range(train.num_classes):
            members = train.indices_of(label)
            generator = torch.Generator().manual_seed(item_seed("random", ctx.seed, label))
            chosen.append(members[torch.randperm(len(members), generator=generator)[: ctx.ipc]])
        return subset_as_distilled(train, torch.cat(chosen), {})
