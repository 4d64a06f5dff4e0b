"""The ImageNet-subset students of the IDC / MGD3 / ManifoldGD evaluation code.

Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization" (IDC), ICML
2022; its `models/resnet_ap.py` is what MGD3 and ManifoldGD train on ImageNette / ImageWoof.

- `resnet-ap` (ResNetAP-10 by default): a ResNet whose downsampling is 2×2 average pooling after
  a stride-1 convolution (blocks and shortcuts), with IDC's stem for its input size: 7×7 conv +
  4×4 average pool above 128 px, 3×3 conv + 2×2 pool above 64 px, 3×3 conv alone below.
- `resnet-idc` (ResNet-18 by default): the same stems and widths, strided convolutions instead.
Both use instance norm (GroupNorm, one group per channel) as the tables do, and global average
pooling before the classifier (IDC's fixed 7×7 pool equals it at 224 px and breaks elsewhere).
"""

from __future__ import annotations

from torch import nn

from ddkit.models._registry import register_model
from ddkit.models.convnet import Norm, norm_layer

STAGES = {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, norm: str, pool: bool) -> None:
        super().__init__()
        down = [] if stride == 1 else [nn.AvgPool2d(stride)] if pool else []
        conv_stride = 1 if pool else stride
        self.body = nn.Sequential(_conv(cin, cout, 3, conv_stride), norm_layer(norm, cout), nn.ReLU(inplace=True), *down,
                                  _conv(cout, cout, 3), norm_layer(norm, cout))
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, conv_stride), *down, norm_layer(norm, cout))

    def forward(self, x):
        return (self.body(x) + self.shortcut(x)).relu()


class IDCResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, depth: int, width: int, norm: str, pool: bool) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"depth must be one of {sorted(STAGES)}, got {depth}")
        if image_size > 128:
            stem = [_conv(in_channels, width, 7), norm_layer(norm, width), nn.ReLU(inplace=True), nn.AvgPool2d(4)]
        elif image_size > 64:
            stem = [_conv(in_channels, width, 3), norm_layer(norm, width), nn.ReLU(inplace=True), nn.AvgPool2d(2)]
        else:
            stem = [_conv(in_channels, width, 3), norm_layer(norm, width), nn.ReLU(inplace=True)]
        blocks, cin = [], width
        for stage, count in enumerate(STAGES[depth]):
            cout = width * 2**stage
            for j in range(count):
                blocks.append(Block(cin, cout, 2 if stage > 0 and j == 0 else 1, norm, pool))
                cin = cout
        self.features = nn.Sequential(*stem, *blocks)
        self.head = nn.Linear(cin, num_classes)

    def embed(self, x):
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x):
        return self.head(self.embed(x))


@register_model("resnet-ap")
def resnet_ap(num_classes: int, in_channels: int, image_size: int, depth: int = 10, width: int = 64, norm: Norm = "instance") -> nn.Module:
    return IDCResNet(num_classes, in_channels, image_size, depth, width, norm, pool=True)


@register_model("resnet-idc")
def resnet_idc(num_classes: int, in_channels: int, image_size: int, depth: int = 18, width: int = 64, norm: Norm = "instance") -> nn.Module:
    return IDCResNet(num_classes, in_channels, image_size, depth, width, norm, pool=False)
