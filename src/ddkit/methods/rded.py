"""RDED (Sun et al., CVPR 2024, "On the Diversity and Realism of Distilled Dataset"): crops of
real images that the teacher finds most typical of their class, tiled factor × factor per image.

Per class: draw `candidates` real images, cut `crops` random square crops from each (random-resized
crop, area fraction in `crop_scale`), keep each image's crop with the lowest teacher cross-entropy
for the class, then the `ipc · factor²` lowest of those, and tile them factor × factor at
1/factor of the image size. A set made for soft labels: the student learns the teacher's view of
each crop. The released code is the spec (LINs-lab/RDED, synthesize/); its CIFAR-10 ConvNet-3
script uses factor 1, 5 crops, 300 candidates, our defaults. `band` > 0 keeps less typical crops
instead (ddkit's option, to test whether a soft-label student learns more from images the
teacher is less sure of).

| released code                        | here                                  |
|--------------------------------------|---------------------------------------|
| mipc, num_crop, factor               | `candidates`, `crops`, `factor`       |
| MultiRandomCrop (ratio 1, scale 0.08–1) | `random_square_crops` (`crop_scale`) |
| selector (per-image argmin, then top n) | `most_typical`                     |
| pad (a patch on a mean canvas)       | `on_canvas`                           |
| mix_images                           | `tile`                                |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ddkit.data.distilled import DistilledSet
from ddkit.devices import module_device
from ddkit.errors import DDKitError
from ddkit.methods.base import Method, SynthesisContext, register_method
from ddkit.models.teachers import Teacher
from ddkit.seeds import item_seed
from ddkit.training import INFERENCE_BATCH


@dataclass(frozen=True)
class RDEDConfig:
    teacher: str = "convnet-bn"  # teacher recipe that scores how typical each crop is of its class
    candidates: int = 300  # real images drawn per class (all of a smaller class)
    crops: int = 5  # random crops cut from each candidate; its most typical one competes
    factor: int = 1  # crops tiled factor × factor per synthetic image, each at 1/factor of the size
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # area fractions of the random-resized crops
    band: float = 0.0  # where the kept crops sit in the cross-entropy order: 0 the most typical (RDED), 1 the least

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.crops < 1 or self.factor < 1:
            raise ValueError("candidates, crops and factor must be >= 1")
        if not 0 <= self.band <= 1:
            raise ValueError(f"band must lie in [0, 1], got {self.band}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be two area fractions 0 < low <= high <= 1, got {self.crop_scale}")


def random_square_crops(
    images: torch.Tensor, count: int, size: int, scale: list[float], generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` random square crops of each image, resized to `size`: (count, N, C, size, size) and
    their boxes (count, N, 3) as (top, left, side) in source pixels."""
    n, _, height, width = images.shape
    area = torch.empty(count, n).uniform_(scale[0], scale[1], generator=generator) * height * width
    side = area.sqrt().round().clamp(1, min(height, width)).long()
    top = (torch.rand(count, n, generator=generator) * (height - side + 1)).long()
    left = (torch.rand(count, n, generator=generator) * (width - side + 1)).long()
    crops = torch.stack([torch.stack([
        F.interpolate(images[i:i + 1, :, y:y + s, x:x + s], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
        for i, (y, x, s) in enumerate(zip(top[k].tolist(), left[k].tolist(), side[k].tolist()))]) for k in range(count)])
    return crops, torch.stack([top, left, side], dim=-1)


def on_canvas(patches: torch.Tensor, size: tuple[int, int], fill: torch.Tensor) -> torch.Tensor:
    """Patches centred on canvases of `size` filled with the per-channel `fill`: how the teacher
    scores a 1/factor patch (the released code pads with zeros after normalisation, the data mean)."""
    canvas = fill.view(1, -1, 1, 1).expand(len(patches), -1, *size).clone()
    top, left = (size[0] - patches.shape[-2]) // 2, (size[1] - patches.shape[-1]) // 2
    canvas[..., top:top + patches.shape[-2], left:left + patches.shape[-1]] = patches
    return canvas


@torch.no_grad()
def cross_entropy_of(teacher: Teacher, images: torch.Tensor, label: int) -> torch.Tensor:
    """The teacher's cross-entropy for class `label` on each image (lower: more typical)."""
    teacher.model.eval()
    device = module_device(teacher.model)
    logits = torch.cat([teacher.model(chunk.to(device)).cpu() for chunk in images.split(INFERENCE_BATCH)])
    return F.cross_entropy(logits, torch.full((len(images),), label), reduction="none")


def most_typical(losses: torch.Tensor, keep: int, band: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """From (crops, candidates) losses: each candidate's best crop, then `keep` consecutive
    candidates in the order of that crop's loss, starting at the fraction `band` of the order
    (0: the lowest, RDED). Returns (candidate indices, their crop indices)."""
    best_loss, best_crop = losses.min(0)
    start = round(band * (len(best_loss) - keep))
    chosen = best_loss.argsort()[start:start + keep]
    return chosen, best_crop[chosen]


def tile(patches: torch.Tensor, factor: int, size: tuple[int, int]) -> torch.Tensor:
    """Consecutive groups of factor² patches laid out row by row, each group one image of `size`
    (rows and columns split as evenly as the size allows, the first ones one pixel larger)."""
    groups = patches.view(-1, factor * factor, *patches.shape[1:])
    heights = [size[0] // factor + (i < size[0] % factor) for i in range(factor)]
    widths = [size[1] // factor + (j < size[1] % factor) for j in range(factor)]
    rows = []
    for i, height in enumerate(heights):
        row = [F.interpolate(groups[:, i * factor + j], size=(height, width), mode="bilinear", antialias=True, align_corners=False)
               for j, width in enumerate(widths)]
        rows.append(torch.cat(row, dim=-1))
    return torch.cat(rows, dim=-2).clamp(0, 1)


@register_method("rded")
class RDED(Method):
    config_class = RDEDConfig
    smoke_options = {"candidates": 4, "crops": 2}

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        cfg, train = self.config, ctx.splits.train
        teacher = ctx.teacher(cfg.teacher)
        height, width = train.image_shape[1:]
        patch = math.ceil(min(height, width) / cfg.factor)
        keep = ctx.ipc * cfg.factor ** 2
        images, provenance = [], []
        for label in range(train.num_classes):
            picks = train.sample(label, cfg.candidates, item_seed(ctx.seed, "rded", label))
            if len(picks) < keep:
                raise DDKitError(f"RDED needs {keep} candidate images of class {train.class_names[label]!r} for IPC {ctx.ipc} "
                                 f"at factor {cfg.factor} and has {len(picks)}; raise candidates or lower factor or IPC")
            generator = torch.Generator().manual_seed(item_seed(ctx.seed, "rded-crops", label))
            crops, boxes = random_square_crops(train.load(picks), cfg.crops, patch, cfg.crop_scale, generator)
            scored = on_canvas(crops.flatten(0, 1), (height, width), torch.as_tensor(train.mean, dtype=torch.float32))
            losses = cross_entropy_of(teacher, scored, label).view(cfg.crops, len(picks))
            chosen, crop_index = most_typical(losses, keep, cfg.band)
            images.append(tile(crops[crop_index, chosen], cfg.factor, (height, width)))
            provenance += [[int(picks[c]), *boxes[k, c].tolist()] for c, k in zip(chosen.tolist(), crop_index.tolist())]
        labels = torch.arange(train.num_classes).repeat_interleave(ctx.ipc)
        return DistilledSet(torch.cat(images), labels, train.class_names, train.mean, train.std,
                            meta={"teacher": teacher.label, "crops": provenance})
