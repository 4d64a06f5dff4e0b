"""A plain multi-layer perceptron: the no-convolution student of cross-architecture tables."""

from __future__ import annotations

import torch
from torch import nn

from ddkit.models._registry import register_model


class MLP(nn.Module):
    def __init__(self, num_classes: int, in_features: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(in_features, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x.flatten(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@register_model("mlp")
def mlp(num_classes: int, in_channels: int, image_size: int, hidden: list[int] = (512, 256)) -> nn.Module:
    return MLP(num_classes, in_channels * image_size * image_size, list(hidden))
