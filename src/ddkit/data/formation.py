"""Multi-formation (Kim et al., ICML 2022, "Dataset Condensation via Efficient Synthetic-Data
Parameterization", IDC): a stored image of a set made with factor f holds f × f tiles, each an
image of the class at 1/f of the resolution. A student trains on the decoded set: every tile
upsampled (bilinear, as IDC's decode_zoom) to the full size, so an IPC-10 set of factor 2 gives
40 training images per class in the pixels of 10.

Tiles are read in row-major order; the decoded images of stored image i are rows i·f² … i·f² + f² − 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddkit.errors import DDKitError


def check_factor(factor: int, height: int, width: int) -> None:
    if factor < 1:
        raise DDKitError(f"formation factor {factor} is not possible; choose 1 (whole images) or more")
    if height % factor or width % factor:
        raise DDKitError(f"formation factor {factor} does not divide the {height}×{width} images; "
                         "choose a factor that divides both sides (e.g. 2)")


def decode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, C, H, W) stored images → (N·f², C, H, W) training images; differentiable, so a method can
    optimise the stored pixels through it."""
    if factor == 1:
        return images
    n, c, h, w = images.shape
    tiles = images.view(n, c, factor, h // factor, factor, w // factor).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n * factor * factor, c, h // factor, w // factor)
    return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)


def encode(images: torch.Tensor, factor: int) -> torch.Tensor:
    """(N·f², C, H, W) full-size images → (N, C, H, W) stored images: each group of f² consecutive
    images shrunk by `factor` (box average) and tiled row-major; `decode` gives back their blurred copies."""
    if factor == 1:
        return images
    m, c, h, w = images.shape
    if m % (factor * factor):
        raise ValueError(f"{m} images do not fill stored images of {factor * factor} tiles each")
    tiles = F.avg_pool2d(images, factor)
    tiles = tiles.view(m // factor**2, factor, factor, c, h // factor, w // factor).permute(0, 3, 1, 4, 2, 5)
    return tiles.reshape(m // factor**2, c, h, w)
