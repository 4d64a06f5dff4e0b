"""Random real subset: IPC training images drawn uniformly from each class (the DC papers' baseline)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
from ddkit.seeds import item_seed


@dataclass(frozen=True)
class RandomConfig:
    factor: int = field(default=1, metadata=ADDED_OPTION)  # multi-formation (IDC-I): ipc·factor² images, factor² per stored image


@register_method("random")
class RandomSubset(Method):
    config_class = RandomConfig

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        train = ctx.splits.train
        count = real_images_needed(train, ctx.ipc, self.config.factor)
        chosen = []
        for label in range(train.num_classes):
            members = train.indices_of(label)
            generator = torch.Generator().manual_seed(item_seed("random", ctx.seed, label))
            chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
        return subset_as_distilled(train, torch.cat(chosen), {}, self.config.factor)
