"""Teacher ensembles for soft labels (PRISM / G-VBSM style).

Teachers of different architectures produce logits of very different scales; a plain average
would be dominated by the most confident one. Each teacher's logits are rescaled to the mean norm
over the teachers, then averaged. Two scopes of "norm":

- per-image (ddkit's default): each image's centred logits, so one image's confident teacher
  cannot dominate another image's label and a constant logit offset changes nothing;
- per-batch (PRISM's released relabel, `generate_soft_label_r18.py`: `torch.norm(output, dim=[1, 2])`):
  one norm per teacher over the whole batch's raw logits, so labels depend on batch composition.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Rescale = Literal["per-image", "per-batch"]


def rescale_to_common_norm(logits: list[torch.Tensor], rescale: Rescale = "per-image") -> torch.Tensor:
    """Average of per-teacher logits (each [B, C]) after rescaling each to the teachers' mean norm."""
    if rescale == "per-batch":
        stacked = torch.stack(logits)  # [T, B, C]
        norms = stacked.norm(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        return (stacked / norms * norms.mean(dim=0, keepdim=True)).mean(dim=0)
    centred = torch.stack([z - z.mean(dim=1, keepdim=True) for z in logits])  # [T, B, C]
    norms = centred.norm(dim=2, keepdim=True).clamp_min(1e-8)
    return (centred / norms * norms.mean(dim=0, keepdim=True)).mean(dim=0)


class EnsembleModel(nn.Module):
    def __init__(self, members: list[nn.Module], rescale: Rescale = "per-image") -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.rescale = rescale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rescale_to_common_norm([member(x) for member in self.members], self.rescale)
