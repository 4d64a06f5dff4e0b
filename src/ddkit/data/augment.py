"""Batched, seeded training augmentations. Each takes pixel-space images and a torch.Generator.

`dsa` follows the differentiable-siamese augmentation of the DC/DSA/DM evaluators
(`ParamDiffAug`, mode "S": one of colour / crop / cutout / flip / scale / rotate per batch, with
per-image parameters), applied in normalised space as there, so cutout fills with the mean.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ddkit.registry import Registry

Augment = Callable[[torch.Tensor, "Stats", torch.Generator], torch.Tensor]
Stats = tuple[tuple[float, ...], tuple[float, ...]]
AUGMENTATIONS: Registry[Augment] = Registry("augmentation")

# ParamDiffAug defaults of the DC/DSA code.
DSA_SCALE, DSA_ROTATE_DEG, DSA_CROP, DSA_CUTOUT = 1.2, 15.0, 0.125, 0.5
DSA_BRIGHTNESS, DSA_SATURATION, DSA_CONTRAST = 1.0, 2.0, 0.5


def _uniform(n: int, generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=True)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def _normalised(fn: Callable[[torch.Tensor, torch.Generator], torch.Tensor]) -> Augment:
    def apply(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
        mean = torch.tensor(stats[0]).to(x).view(1, -1, 1, 1)
        std = torch.tensor(stats[1]).to(x).view(1, -1, 1, 1)
        return fn((x - mean) / std, generator) * std + mean

    return apply


def _owners(x: torch.Tensor, owner: Optional[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Which parameter draw each image uses, and how many draws: one per image unless `owner` groups them."""
    if owner is None:
        return torch.arange(x.shape[0]), x.shape[0]
    return owner, int(owner.max()) + 1


def _dsa_scale(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    sx, sy = _uniform(n, g, 1 / DSA_SCALE, DSA_SCALE)[owner], _uniform(n, g, 1 / DSA_SCALE, DSA_SCALE)[owner]
    zero = torch.zeros(len(owner))
    theta = torch.stack([torch.stack([sx, zero, zero], 1), torch.stack([zero, sy, zero], 1)], 1)
    return _warp(x, theta)


def _dsa_rotate(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    angle = ((_uniform(n, g) - 0.5) * 2 * DSA_ROTATE_DEG * math.pi / 180)[owner]
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, sin, zero], 1), torch.stack([-sin, cos, zero], 1)], 1)
    return _warp(x, theta)


def _integer_shift(x: torch.Tensor, shift_x: torch.Tensor, shift_y: torch.Tensor) -> torch.Tensor:
    """Translate each image by whole pixels, filling with zeros."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1) - shift_y.to(x.device).view(n, 1, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w) - shift_x.to(x.device).view(n, 1, 1)
    inside = ((rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)).unsqueeze(1)
    flat = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w).expand(-1, x.shape[1], -1)
    return torch.gather(x.flatten(2), 2, flat).view_as(x) * inside


def _dsa_crop(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    _, _, h, w = x.shape
    rx, ry = int(w * DSA_CROP + 0.5), int(h * DSA_CROP + 0.5)
    return _integer_shift(x, torch.randint(-rx, rx + 1, (n,), generator=g)[owner], torch.randint(-ry, ry + 1, (n,), generator=g)[owner])


def _dsa_cutout(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    _, _, h, w = x.shape
    ch, cw = int(h * DSA_CUTOUT + 0.5), int(w * DSA_CUTOUT + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), generator=g)[owner].to(x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), generator=g)[owner].to(x.device)
    rows, cols = torch.arange(h, device=x.device).view(1, h, 1), torch.arange(w, device=x.device).view(1, 1, w)
    hole = ((rows - cy).abs() <= ch // 2) & ((cols - cx).abs() <= cw // 2)
    return x * (~hole).unsqueeze(1)


def _flip(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    flip = (torch.rand(n, generator=g) < 0.5)[owner].to(x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def _dsa_color(x: torch.Tensor, g: torch.Generator, owner: Optional[torch.Tensor] = None) -> torch.Tensor:
    owner, n = _owners(x, owner)
    x = x + (_uniform(n, g) - 0.5)[owner].to(x).view(-1, 1, 1, 1) * DSA_BRIGHTNESS
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_uniform(n, g) * DSA_SATURATION)[owner].to(x).view(-1, 1, 1, 1) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(n, g) + DSA_CONTRAST)[owner].to(x).view(-1, 1, 1, 1) + mean


DSA_GROUPS = (_dsa_color, _dsa_crop, _dsa_cutout, _flip, _dsa_scale, _dsa_rotate)


@AUGMENTATIONS.register("dsa")
@_normalised
def dsa(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    group = DSA_GROUPS[int(torch.randint(len(DSA_GROUPS), (1,), generator=generator))]
    return group(x, generator)


IDC_GEOMETRY = (_dsa_crop, _dsa_scale, _dsa_rotate)


@AUGMENTATIONS.register("diffaug-idc")
@_normalised
def diffaug_idc(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """IDC's evaluation augmentation at 28-32 px (misc/augment.py DiffAug, per-image parameters): where DSA
    applies one transformation per batch, IDC flips, colours and cuts out every batch, with one of crop /
    scale / rotate between (its CutMix is the recipe's `mix`)."""
    x = _dsa_color(_flip(x, generator), generator)
    x = IDC_GEOMETRY[int(torch.randint(len(IDC_GEOMETRY), (1,), generator=generator))](x, generator)
    return _dsa_cutout(x, generator)


def dsa_siamese(x: torch.Tensor, stats: Stats, generator: torch.Generator, owner: torch.Tensor) -> torch.Tensor:
    """DSA with one parameter draw per `owner` value: images that share an owner get the same
    transformation, as DSA's siamese mode gives a real batch and the synthetic batch it is matched to."""
    group = DSA_GROUPS[int(torch.randint(len(DSA_GROUPS), (1,), generator=generator))]
    return _normalised(lambda y, g: group(y, g, owner))(x, stats, generator)


def crop_flip(x: torch.Tensor, generator: torch.Generator, min_area: float = 0.25, per_image: bool = True) -> torch.Tensor:
    """Random-resized crop (area `min_area`-100 %, aspect 3/4-4/3) back to full size, then flip.

    Differentiable in `x` (an affine warp), so model inversion can optimise through it; with
    `per_image=False` the whole batch shares one crop and one flip, as SRe2L's recover step does.
    """
    n = x.shape[0] if per_image else 1
    area = _uniform(n, generator, min_area, 1.0)
    log_ratio = _uniform(n, generator, math.log(3 / 4), math.log(4 / 3))
    sw = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    sh = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx = (_uniform(n, generator) * 2 - 1) * (1 - sw)
    ty = (_uniform(n, generator) * 2 - 1) * (1 - sh)
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([sw, zero, tx], 1), torch.stack([zero, sh, ty], 1)], 1)
    flip = (torch.rand(n, generator=generator) < 0.5).view(-1, 1, 1, 1).to(x.device)
    warped = _warp(x, theta.to(x.device).expand(x.shape[0], -1, -1))
    return torch.where(flip, warped.flip(3), warped)


@AUGMENTATIONS.register("rrc-flip")
def random_resized_crop_flip(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
    """Per-image random-resized crop (area 25-100 %, aspect 3/4-4/3) back to full size, then flip."""
    return crop_flip(x, generator)


@AUGMENTATIONS.register("shift-flip")
def shift_flip(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
    """Whole-pixel shifts of up to 1/8 of the side, filled with the mean, then flip: teacher training."""
    mean = torch.tensor(stats[0], dtype=x.dtype).view(1, -1, 1, 1)
    n, _, h, w = x.shape
    r = max(1, w // 8)
    shifted = _integer_shift(x - mean, torch.randint(-r, r + 1, (n,), generator=generator), torch.randint(-r, r + 1, (n,), generator=generator))
    return _flip(shifted + mean, generator)


@AUGMENTATIONS.register("none")
def no_augmentation(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
    return x


@AUGMENTATIONS.register("rrc-flip-wide")
def random_resized_crop_flip_wide(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop default (area 8-100 %) + flip: SRe2L's relabel and student recipe."""
    return crop_flip(x, generator, min_area=0.08)


# AlexNet-style PCA lighting on ImageNet's RGB covariance (eigenvalues, eigenvectors as columns).
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma (ITU-R 601 weights, as IDC's Grayscale) on every channel; a 1-channel image is its own grey."""
    if x.shape[1] != 3:
        return x
    weights = torch.tensor((0.299, 0.587, 0.114), dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True).expand_as(x)


# IDC's three jitters (misc/utils.py Brightness, Contrast, Saturation): each moves the image towards
# a target, img.lerp(target, α) with α uniform in ±strength.
JITTER_TARGETS = (
    torch.zeros_like,  # brightness: towards black
    lambda x: _grey(x).mean(dim=(1, 2, 3), keepdim=True).expand_as(x),  # contrast: towards the mean grey
    _grey,  # saturation: towards the image's own grey
)


def colour_jitter(x: torch.Tensor, generator: torch.Generator, strength: float = 0.4) -> torch.Tensor:
    """IDC's ColorJitter: brightness, contrast and saturation, each image in its own random order."""
    n = x.shape[0]
    order = torch.stack([torch.randperm(len(JITTER_TARGETS), generator=generator) for _ in range(n)])
    for position in range(len(JITTER_TARGETS)):
        alpha = _uniform(n, generator, -strength, strength).view(n, 1, 1, 1).to(x)
        for op, target in enumerate(JITTER_TARGETS):
            chosen = (order[:, position] == op).view(n, 1, 1, 1)
            x = torch.where(chosen, torch.lerp(x, target(x), alpha), x)
    return x


def pca_lighting(x: torch.Tensor, generator: torch.Generator, alpha_std: float = 0.1) -> torch.Tensor:
    if x.shape[1] != 3:
        return x
    alpha = torch.randn(x.shape[0], 3, generator=generator) * alpha_std
    shift = (alpha * torch.tensor(IMAGENET_EIGVAL)) @ torch.tensor(IMAGENET_EIGVEC).T
    return x + shift.to(x).view(-1, 3, 1, 1)


@AUGMENTATIONS.register("idc")
def idc_augmentation(x: torch.Tensor, stats: Stats, generator: torch.Generator) -> torch.Tensor:
    """IDC's ImageNet-subset training augmentation (data.py transform_imagenet): random-resized crop
    (area 50-100 %), flip, colour jitter 0.4 and PCA lighting 0.1 (its CutMix is the recipe's `mix`).
    Not clipped to [0, 1]: IDC jitters after ToTensor and normalises what comes out."""
    return pca_lighting(colour_jitter(crop_flip(x, generator, min_area=0.5), generator), generator)
