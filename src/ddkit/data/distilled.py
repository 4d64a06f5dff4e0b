"""The distilled-set format.

    SET/manifest.json        format, class names, method metadata, checksum of the tensors
    SET/tensors.safetensors  exact images (float32, pixel space; may leave [0, 1]), labels, soft labels
    SET/class_index.json     class name -> index
    SET/images/0003_Dress/00000.png   8-bit view for eyes and torchvision's ImageFolder
    SET/curves/              curves of the synthesis's training loops, when it has any (ddkit.curves)

The tensors are the source of truth; PNGs are clamped to [0, 1] and quantised, so they are only
a view. Folder names carry the zero-padded class index, so sorted order is class order and a
class name never becomes a path unescaped.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.runs import atomic_directory, atomic_write_json, read_json, sha256_file

FORMAT = "ddkit-distilled/1"
TENSORS = "tensors.safetensors"


def class_folder_name(index: int, name: str) -> str:
    return f"{index:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('._') or 'class'}"


@dataclass
class DistilledSet:
    images: torch.Tensor  # (N, C, H, W) float32
    labels: torch.Tensor  # (N,) int64
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    soft_labels: Optional[torch.Tensor] = None  # (N, K) float
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def ipc(self) -> int:
        return int(torch.bincount(self.labels, minlength=len(self.class_names)).max())

    def as_image_set(self) -> ImageSet:
        return ImageSet(self.images, self.labels, self.class_names, self.mean, self.std)

    def save(self, path: Path, folders: Optional[dict[str, Path]] = None) -> None:
        """Write the set; existing `folders` (e.g. the synthesis curves) are copied in under their
        names, so they land with the set in the same rename."""
        with atomic_directory(Path(path)) as tmp:
            for name, folder in (folders or {}).items():
                if Path(folder).is_dir():
                    shutil.copytree(folder, tmp / name)
            tensors = {"images": self.images.contiguous().float(), "labels": self.labels.contiguous().long()}
            if self.soft_labels is not None:
                tensors["soft_labels"] = self.soft_labels.contiguous().float()
            save_file(tensors, str(tmp / TENSORS))
            atomic_write_json(tmp / "class_index.json", {n: i for i, n in enumerate(self.class_names)})
            self._write_pngs(tmp / "images")
            atomic_write_json(
                tmp / "manifest.json",
                {
                    "format": FORMAT,
                    "class_names": list(self.class_names),
                    "mean": list(self.mean),
                    "std": list(self.std),
                    "num_images": len(self),
                    "ipc": self.ipc,
                    "image_shape": list(self.images.shape[1:]),
                    "has_soft_labels": self.soft_labels is not None,
                    "checksums": {TENSORS: sha256_file(tmp / TENSORS)},
                    "meta": self.meta,
                },
            )

    def _write_pngs(self, root: Path) -> None:
        pixels = (self.images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        counters: dict[int, int] = {}
        for array, label in zip(pixels, self.labels.tolist()):
            folder = root / class_folder_name(label, self.class_names[label])
            folder.mkdir(parents=True, exist_ok=True)
            index = counters.get(label, 0)
            counters[label] = index + 1
            Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(folder / f"{index:05d}.png")

    @classmethod
    def load(cls, path: Path) -> "DistilledSet":
        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.exists():
            raise DDKitError(f"{path} is not a distilled set (no manifest.json); make one with 'ddkit synthesize'")
        manifest = read_json(manifest_path)
        if manifest.get("format") != FORMAT:
            raise DDKitError(f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}")
        tensor_path = path / TENSORS
        if not tensor_path.exists() or sha256_file(tensor_path) != manifest["checksums"][TENSORS]:
            raise DDKitError(f"{tensor_path} is missing or does not match its checksum; re-create the set")
        try:
            tensors = load_file(str(tensor_path))
        except SafetensorError as err:
            raise DDKitError(f"{tensor_path} is corrupt ({err}); re-create the set") from None
        return cls(
            images=tensors["images"],
            labels=tensors["labels"],
            class_names=tuple(manifest["class_names"]),
            mean=tuple(manifest["mean"]),
            std=tuple(manifest["std"]),
            soft_labels=tensors.get("soft_labels"),
            meta=manifest.get("meta", {}),
        )


def pngs_as_array(path: Path) -> np.ndarray:
    """Read a set's PNG view back in ImageFolder order (for checks and external tools)."""
    files = sorted((Path(path) / "images").glob("*/*.png"))
    return np.stack([np.asarray(Image.open(f)) for f in files])
