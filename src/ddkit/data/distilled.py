"""The distilled-set format.

    SET/manifest.json        format, class names, method metadata, checksum of the tensors
    SET/tensors.safetensors  exact images (float32, pixel space; may leave [0, 1]), labels, soft labels
    SET/class_index.json     class name -> index
    SET/images/0003_Dress/00000.png   8-bit view for eyes and torchvision's ImageFolder
    SET/curves/              curves of the synthesis's training loops, when it has any (ddkit.curves)

A set made with a formation factor f > 1 (manifest "factor") stores f × f low-resolution tiles per
image (ddkit.data.formation); its IPC counts stored images, and students train on the decoded tiles.

The tensors are the source of truth; PNGs are clamped to [0, 1] and quantised, so they are only
a view. Folder names carry the zero-padded class index, so sorted order is class order and a
class name never becomes a path unescaped.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from ddkit.data import formation
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.runs import (
    OutputKind,
    atomic_directory,
    atomic_write_json,
    atomic_write_tensors,
    check_output,
    manifest_field,
    read_json,
    sha256_file,
)

FORMAT = "ddkit-distilled/1"
TENSORS = "tensors.safetensors"
DISTILLED_SET = OutputKind("distilled set", lambda folder: manifest_field(folder, "format") == FORMAT)


def _is_list_of(kind: type | tuple[type, ...]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


MANIFEST_KEYS: dict[str, Callable[[Any], bool]] = {
    "format": lambda value: isinstance(value, str),
    "class_names": lambda value: _is_list_of(str)(value) and len(value) > 0,
    "mean": _is_list_of((int, float)),
    "std": _is_list_of((int, float)),
    "checksums": lambda value: isinstance(value, dict) and isinstance(value.get(TENSORS), str),
}
OPTIONAL_KEYS: dict[str, Callable[[Any], bool]] = {
    "meta": lambda value: isinstance(value, dict),
    "factor": lambda value: isinstance(value, int) and not isinstance(value, bool) and value >= 1,
}


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
    factor: int = 1  # multi-formation: each stored image holds factor × factor tiles (ddkit.data.formation)

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def ipc(self) -> int:
        return int(torch.bincount(self.labels, minlength=len(self.class_names)).max())

    def as_image_set(self) -> ImageSet:
        """The images a student trains on: the decoded tiles of a multi-formation set."""
        decoded = self.decoded()
        return ImageSet(decoded.images, decoded.labels, self.class_names, self.mean, self.std)

    def decoded(self) -> "DistilledSet":
        """The set as factor-1 training images: each stored image's tiles, upsampled, with its labels."""
        if self.factor == 1:
            return self
        per_image = self.factor**2
        soft = None if self.soft_labels is None else self.soft_labels.repeat_interleave(per_image, 0)
        return DistilledSet(formation.decode(self.images, self.factor), self.labels.repeat_interleave(per_image),
                            self.class_names, self.mean, self.std, soft, self.meta)

    def save(self, path: Path, folders: Optional[dict[str, Path]] = None) -> None:
        """Write the set; existing `folders` (e.g. the synthesis curves) are copied in under their
        names, so they land with the set in the same rename."""
        with atomic_directory(Path(path), DISTILLED_SET) as tmp:
            for name, folder in (folders or {}).items():
                if Path(folder).is_dir():
                    shutil.copytree(folder, tmp / name)
            tensors = {"images": self.images.float(), "labels": self.labels.long()}
            if self.soft_labels is not None:
                tensors["soft_labels"] = self.soft_labels.float()
            atomic_write_tensors(tmp / TENSORS, tensors)
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
                    "factor": self.factor,
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
            raise DDKitError(f"{path} is not a distilled set (no manifest.json); make one with 'ddkit synthesize' or 'ddkit import'")
        manifest = check_manifest(read_json(manifest_path), manifest_path)
        tensor_path = path / TENSORS
        if not tensor_path.exists() or sha256_file(tensor_path) != manifest["checksums"][TENSORS]:
            raise DDKitError(f"{tensor_path} is missing or does not match its checksum; re-create the set")
        try:
            tensors = load_file(str(tensor_path))
        except SafetensorError as err:
            raise DDKitError(f"{tensor_path} is corrupt ({err}); re-create the set") from None
        missing = [name for name in ("images", "labels") if name not in tensors]
        if missing:
            raise DDKitError(f"{tensor_path} lacks the tensor {missing[0]!r}; re-create the set")
        loaded = cls(
            images=tensors["images"],
            labels=tensors["labels"],
            class_names=tuple(manifest["class_names"]),
            mean=tuple(manifest["mean"]),
            std=tuple(manifest["std"]),
            soft_labels=tensors.get("soft_labels"),
            meta=manifest.get("meta", {}),
            factor=manifest.get("factor", 1),
        )
        check_contents(loaded, f"{tensor_path}: ", "re-create the set")
        # A tool may store other widths; everything downstream expects float32 pixels and int64 labels.
        loaded.images, loaded.labels = loaded.images.float(), loaded.labels.long()
        if loaded.soft_labels is not None:
            loaded.soft_labels = loaded.soft_labels.float()
        return loaded


def check_manifest(manifest: Any, source: Path) -> dict[str, Any]:
    """The manifest's keys and their types: a tool may have written it, so nothing is assumed."""
    if not isinstance(manifest, dict):
        raise DDKitError(f"{source} is not a set manifest (a JSON object), it holds a {type(manifest).__name__}; re-create the set")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DDKitError(f"{source} lacks the key(s) {', '.join(map(repr, missing))}; re-create the set")
    if manifest["format"] != FORMAT:
        raise DDKitError(f"{source} has format {manifest['format']!r}, expected {FORMAT!r}; re-create the set, "
                         "or bring another tool's set in with 'ddkit import'")
    wrong = [key for key, is_valid in MANIFEST_KEYS.items() if not is_valid(manifest[key])]
    wrong += [key for key, is_valid in OPTIONAL_KEYS.items() if key in manifest and not is_valid(manifest[key])]
    if wrong:
        raise DDKitError(f"{source} has a malformed {wrong[0]!r} ({manifest[wrong[0]]!r}); re-create the set")
    return manifest


def check_contents(distilled: DistilledSet, where: str, fix: str) -> None:
    """Raise one line naming what is wrong (after `where`), then `fix`; whoever wrote the set."""
    problem = content_problem(distilled)
    if problem:
        raise DDKitError(f"{where}{problem}; {fix}")


def content_problem(distilled: DistilledSet) -> Optional[str]:
    """The first disagreement between a set's images, labels, soft labels, classes and stats."""
    images, labels, soft, classes = distilled.images, distilled.labels, distilled.soft_labels, len(distilled.class_names)
    if images.ndim != 4 or not images.is_floating_point():
        return f"images must be N×C×H×W floats, got {images.dtype} of shape {tuple(images.shape)}"
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        return f"labels must be N integers, got {labels.dtype} of shape {tuple(labels.shape)}"
    if images.shape[0] != labels.shape[0]:
        return f"{images.shape[0]} images but {labels.shape[0]} labels"
    if labels.numel() == 0:
        return "the set holds no images"
    outside = labels[(labels < 0) | (labels >= classes)]
    if outside.numel():
        return f"label {int(outside[0])} is outside the set's {classes} classes (0 to {classes - 1})"
    if len(distilled.mean) != images.shape[1] or len(distilled.std) != images.shape[1]:
        return f"mean and std have {len(distilled.mean)} and {len(distilled.std)} values for {images.shape[1]} channels"
    if soft is not None and tuple(soft.shape) != (labels.shape[0], classes):
        return f"soft_labels have shape {tuple(soft.shape)}, expected ({labels.shape[0]}, {classes}): a row per image, a column per class"
    if soft is not None and not torch.isfinite(soft).all():
        return "soft_labels hold NaN or infinite values"
    if images.shape[2] % distilled.factor or images.shape[3] % distilled.factor:
        return f"formation factor {distilled.factor} does not divide the {images.shape[2]}×{images.shape[3]} images"
    return None


def matching_set(path: Path, wanted: dict[str, Any], comparable: Optional[dict[str, Callable[[Any], Any]]] = None,
                 ) -> Optional[DistilledSet]:
    """The set at `path` if its metadata holds `wanted` (a key's stored value passed through
    `comparable[key]` first, where given); None when `path` is free (absent or empty).

    Anything else there is an error: another ddkit set (naming the key that differs), or a folder
    ddkit did not write, which is never replaced.
    """
    path = Path(path)
    check_output(path, DISTILLED_SET)
    if not DISTILLED_SET.recognise(path):
        return None
    existing = DistilledSet.load(path)
    found = {key: (comparable or {}).get(key, lambda value: value)(existing.meta.get(key)) for key in wanted}
    if found != wanted:
        key = next(k for k in wanted if found[k] != wanted[k])
        raise DDKitError(f"{path} holds a set made with another {key} ({str(found[key])[:80]!r}); "
                         "pass another --out or delete it")
    return existing
