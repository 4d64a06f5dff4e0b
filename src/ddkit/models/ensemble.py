"""Teacher ensembles for soft labels (PRISM / G-VBSM style).

Teachers of different architectures produce logits of very different scales; a plain average
would be dominated by the most confident one. Each teacher's centred logits are rescaled, per
image, to the mean norm over the teachers, then averaged.
"""

from __future__ import annotations

import torch
from torch import nn


def rescale_to_common_norm(logits: list[torch.Tensor]) -> torch.Tensor:
    """Average of per-teacher logits (each [B, C]) after rescaling each to the teachers' mean norm."""
    centred = torch.stack([z - z.mean(dim=1, keepdim=True) for z in logits])  # [T, B, C]
    norms = centred.norm(dim=2, keepdim=True).clamp_min(1e-8)
    return (centred / norms * norms.mean(dim=0, keepdim=True)).mean(dim=0)


class EnsembleModel(nn.Module):
    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rescale_to_common_norm([member(x) for member in self.members])
