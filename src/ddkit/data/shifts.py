"""Distribution-shifted copies of a test split (a "Fashion-MNIST-C"), built by code.

Five shifts, each at one fixed severity and seeded, so every student is scored on the same
images: `rotate` (±15–45°), `blur` (Gaussian, σ 1 px), `noise` (Gaussian, σ 0.2), `invert`
(contrast inversion, 1 − x) and `elastic` (a smoothed random displacement field, α 2 px,
smoothing σ 3 px, Simard et al. 2003). Labels are unchanged.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError

Shift = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _rotate(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = len(images)
    sign = torch.randint(0, 2, (n,), generator=generator) * 2 - 1
    angle = torch.deg2rad(sign * (15 + 30 * torch.rand(n, generator=generator)))
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
    return _resample(images, F.affine_grid(theta, list(images.shape), align_corners=False))


def _blur(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return gaussian_blur(images, kernel_size=[5, 5], sigma=[1.0, 1.0])


def _noise(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return (images + 0.2 * torch.randn(images.shape, generator=generator)).clamp(0, 1)


def _invert(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return 1 - images


def _elastic(images: torch.Tensor, generator: torch.Generator, alpha: float = 2.0, sigma: float = 3.0) -> torch.Tensor:
    n, _, h, w = images.shape
    field = torch.rand(n, 2, h, w, generator=generator) * 2 - 1
    size = 2 * int(3 * sigma) + 1
    field = gaussian_blur(field, kernel_size=[size, size], sigma=[sigma, sigma])
    field = field / field.flatten(1).abs().amax(1).clamp_min(1e-8).view(n, 1, 1, 1) * alpha  # pixels
    identity = F.affine_grid(torch.eye(2, 3).expand(n, 2, 3), list(images.shape), align_corners=False)
    scale = torch.tensor([2 / w, 2 / h])
    return _resample(images, identity + field.permute(0, 2, 3, 1) * scale)


def _resample(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)


SHIFTS: dict[str, Shift] = {"rotate": _rotate, "blur": _blur, "noise": _noise, "invert": _invert, "elastic": _elastic}


def shifted_sets(test: ImageSet, names: Sequence[str], seed: int = 0) -> dict[str, ImageSet]:
    """One shifted copy of `test` per name, deterministic given `seed`."""
    unknown = [name for name in names if name not in SHIFTS]
    if unknown:
        raise DDKitError(f"unknown shift(s) {unknown}; choose from: {', '.join(SHIFTS)}")
    # Each shift draws its random numbers for the whole split at once, so the split is read whole:
    # shifts are for small test splits (Fashion-MNIST-C), not folder sets.
    images = test.load(torch.arange(len(test))) if names else None
    sets = {}
    for name in names:
        generator = torch.Generator().manual_seed(seed * len(SHIFTS) + list(SHIFTS).index(name))
        sets[name] = ImageSet(SHIFTS[name](images, generator), test.labels, test.class_names, test.mean, test.std)
    return sets
