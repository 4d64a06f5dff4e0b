"""A small MobileNet-style net of depthwise-separable convolutions (Howard et al. 2017).

Stem conv → blocks of [depthwise 3×3 → BN → ReLU6 → pointwise 1×1 → BN → ReLU6] → pool → linear.
"""

from __future__ import annotations

import torch
from torch import nn

from ddkit.models._registry import register_model


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU6(inplace=True),
    )


class MobileNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, widths: list[int], strides: list[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU6(inplace=True))
        blocks, cin = [], widths[0]
        for width, stride in zip(widths[1:], strides):
            blocks.append(separable(cin, width, stride))
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


@register_model("mobilenet")
def mobilenet(
    num_classes: int, in_channels: int, image_size: int,
    widths: list[int] = (16, 64, 128, 128, 256), strides: list[int] = (2, 1, 2, 1),
) -> nn.Module:
    if len(strides) != len(widths) - 1:
        raise ValueError("mobilenet needs one stride per block: len(strides) == len(widths) - 1")
    return MobileNet(num_classes, in_channels, list(widths), list(strides))
