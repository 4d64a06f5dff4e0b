"""The ImageNet-subset students of the IDC / MGD3 / ManifoldGD evaluation code.

Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization" (IDC), ICML
2022; its `models/resnet_ap.py` is what MGD3 and ManifoldGD train on ImageNette / ImageWoof.

- `resnet-ap` (ResNetAP-10 by default): a ResNet whose downsampling is 2×2 average pooling after
  a stride-1 convolution (blocks and shortcuts), with IDC's stem for its input size: 7×7 conv +
  4×4 average pool above 128 px, 3×3 conv + 2×2 pool above 64 px, 3×3 conv alone below.
- `resnet-idc` (ResNet-18 by default): IDC's `models/resnet.py`, strided convolutions, with its
  stem for the input size: 7×7 conv at stride 2 + 3×3 max pool at stride 2 above 128 px (the
  torchvision stem), 3×3 conv + that max pool above 64 px, 3×3 conv alone below.
Both use instance norm (GroupNorm, one group per channel) as the tables do, IDC's initialisation
(He-normal over each conv's fan-out), and global average pooling before the classifier (IDC's
`avg_pool2d(x, x.shape[-1])`).
"""

from __future__ import annotations

import math

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


def idc_stem(in_channels: int, width: int, image_size: int, norm: str, pool: bool) -> list[nn.Module]:
    """IDC's `IntroBlock`: how much it downsamples depends on the input size (÷4 above 128 px,
    ÷2 above 64 px, none below). ResNetAP average-pools after a stride-1 conv; ResNet strides its
    7×7 conv and max-pools, as torchvision's ResNet."""
    large = image_size > 128
    if image_size <= 64:
        downsample: list[nn.Module] = []
    elif pool:
        downsample = [nn.AvgPool2d(4 if large else 2)]
    else:
        downsample = [nn.MaxPool2d(3, 2, 1)]
    conv = _conv(in_channels, width, 7, 1 if pool else 2) if large else _conv(in_channels, width, 3)
    return [conv, norm_layer(norm, width), nn.ReLU(inplace=True), *downsample]


class IDCResNet(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, image_size: int, depth: int, width: int, norm: str, pool: bool) -> None:
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"depth must be one of {sorted(STAGES)}, got {depth}")
        stem = idc_stem(in_channels, width, image_size, norm, pool)
        blocks, cin = [], width
        for stage, count in enumerate(STAGES[depth]):
            cout = width * 2**stage
            for j in range(count):
                blocks.append(Block(cin, cout, 2 if stage > 0 and j == 0 else 1, norm, pool))
                cin = cout
        self.features = nn.Sequential(*stem, *blocks)
        self.head = nn.Linear(cin, num_classes)
        for module in self.modules():  # IDC's init: N(0, 2 / fan-out) for every conv
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0, math.sqrt(2 / fan_out))

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
