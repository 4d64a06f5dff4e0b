"""`ddkit import`: a set made by another tool becomes a ddkit set, scored by `ddkit evaluate` under our presets.

Sources:

    SRC/<class>/*.png|jpg    an ImageFolder tree; a class folder is named by the class's name, its
                             index, or NNNN_Name as ddkit itself writes them
    SRC.npz / SRC.pt         `images` (N×H×W, N×H×W×C or N×C×H×W), `labels` (class indices) and
                             optional `soft_labels` (N×K); .pt only through torch.load(weights_only=True)

Pixels: uint8 is divided by 255; floats are read as [0, 1] unless `normalised` says they were
normalised with the dataset's mean and std (then that is undone). The set is checked against the
real dataset it is evaluated on (classes, image size, channels), whose config goes into the set's
metadata so `ddkit evaluate` finds the dataset as it does for our own sets.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ddkit.config import to_dict
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.arrays import check_label_range, check_pairs, class_indices, images_to_nchw, read_npz
from ddkit.data.distilled import DistilledSet, check_contents, class_folder_name, matching_set
from ddkit.data.image_folder import class_folders, image_files
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.runs import sha256_file

TENSOR_KEYS = "'images', 'labels' (class indices) and optionally 'soft_labels'"
# Synthesised pixels may overshoot [0, 1] a little (ddkit's own sets do); pixels normalised with a
# dataset's stats reach -0.8 (Fashion-MNIST) to -2 (ImageNet), and 0-255 floats far above 1.
RANGE_SLACK = 0.5
PROBABILITY_TOLERANCE = 1e-3  # rows of soft labels stored as float16 still sum to 1 within this


@dataclass(frozen=True)
class ImportOptions:
    normalised: bool = False  # float images are normalised with the dataset's mean/std: undo it
    soft_logits: bool = False  # soft labels are logits: softmax them (else rows must be probabilities)
    resize: bool = False  # resize images to the dataset's image size instead of refusing another size


@dataclass(frozen=True)
class SourceSet:
    """What a source holds, as read: pixels not yet checked against the dataset."""

    images: list[torch.Tensor]  # one N×C×H×W float batch per source file (an ImageFolder gives one per image)
    names: list[str]  # where each batch came from, for error messages
    labels: torch.Tensor
    soft_labels: Optional[np.ndarray]
    eight_bit: bool  # pixels were uint8 (now divided by 255), so they cannot have been normalised


def import_set(source: Path, out: Path, dataset: DatasetConfig, options: ImportOptions = ImportOptions()) -> DistilledSet:
    """Import `source` into the ddkit set `out`; an identical earlier import there is returned as it is."""
    source, out = Path(source), Path(out)
    if not source.exists():
        raise DDKitError(f"{source} does not exist; pass an ImageFolder directory, an .npz or a .pt file")
    wanted = {"method": "import", "source_sha256": source_digest(source), "dataset": to_dict(dataset), "config": to_dict(options)}
    existing = matching_set(out, wanted)
    if existing is not None:
        return existing
    reference = load_dataset(dataset).train
    raw = read_source(source, reference.class_names)
    if options.normalised and raw.eight_bit:
        raise DDKitError(f"{source} holds 8-bit pixels, which cannot be normalised; drop --normalised")
    images = torch.cat([fit_to_dataset(batch, reference, options, dataset.name, name) for batch, name in zip(raw.images, raw.names)])
    check_pairs(images, raw.labels, f"{source}:images", f"{source}:labels")
    check_label_range(raw.labels, reference.class_names, f"{source}:labels", _wrong_dataset_fix(dataset.name))
    check_every_class(raw.labels, reference.class_names, source, dataset.name)
    soft = None if raw.soft_labels is None else soft_probabilities(raw.soft_labels, options.soft_logits, len(raw.labels),
                                                                   len(reference.class_names), f"{source}:soft_labels")
    distilled = DistilledSet(images, raw.labels, reference.class_names, reference.mean, reference.std, soft,
                             {**wanted, "source": str(source.resolve())})
    distilled.meta["ipc"] = distilled.ipc
    check_contents(distilled, f"{source}: ", "fix the source")
    distilled.save(out)
    return distilled


def source_digest(source: Path) -> str:
    """sha256 of a source file, or of every file in a tree (their relative paths and contents)."""
    if source.is_file():
        return sha256_file(source)
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(source).as_posix()}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def read_source(source: Path, class_names: tuple[str, ...]) -> SourceSet:
    if source.is_dir():
        return read_image_folder(source, class_names)
    if source.suffix == ".npz":
        return arrays_source(read_npz(source), source)
    if source.suffix in (".pt", ".pth"):
        return arrays_source(read_torch_file(source), source)
    raise DDKitError(f"{source} is neither a directory nor an .npz or .pt file; see 'ddkit import --help'")


def read_torch_file(path: Path) -> dict[str, np.ndarray]:
    fix = f"save a dict of tensors {TENSOR_KEYS} with torch.save"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise DDKitError(f"{path} is corrupt or does not load with torch.load(weights_only=True) ({type(err).__name__}); {fix}") from None
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise DDKitError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors; {fix}")
    # numpy has no bfloat16: widen it (pixels and soft labels alike) rather than refuse the file.
    return {str(k): (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in loaded.items()}


def arrays_source(arrays: dict[str, np.ndarray], source: Path) -> SourceSet:
    missing = [key for key in ("images", "labels") if key not in arrays]
    if missing:
        found = ", ".join(map(repr, sorted(arrays))) or "nothing"
        raise DDKitError(f"{source} lacks {missing[0]!r} (it holds {found}); it needs {TENSOR_KEYS}")
    return SourceSet([images_to_nchw(arrays["images"], f"{source}:images")], [f"{source}:images"],
                     class_indices(arrays["labels"], f"{source}:labels"), arrays.get("soft_labels"),
                     arrays["images"].dtype == np.uint8)


def read_image_folder(root: Path, class_names: tuple[str, ...]) -> SourceSet:
    images, names, labels = [], [], []
    owner: dict[int, str] = {}
    for folder in class_folders(root):
        label = match_class(folder, class_names)
        if label is None:
            raise DDKitError(f"{root / folder} matches no class; {_folder_naming(class_names)}")
        if label in owner:
            raise DDKitError(f"{root / owner[label]} and {root / folder} both hold class {class_names[label]!r}; merge them")
        owner[label] = folder
        for path in image_files(root / folder):
            images.append(read_image(path))
            names.append(str(path))
            labels.append(label)
    if not images:
        raise DDKitError(f"{root} holds no images; expected {root}/<class>/<image>.png")
    return SourceSet(images, names, torch.tensor(labels), None, eight_bit=True)


def match_class(folder: str, class_names: tuple[str, ...]) -> Optional[int]:
    """The class a folder holds: by name (also as ddkit escapes it), by index, or by ddkit's NNNN_Name."""
    for index, name in enumerate(class_names):
        escaped = class_folder_name(index, name)
        if folder in (name, escaped, escaped.split("_", 1)[1]):
            return index
    return int(folder) if folder.isdigit() and int(folder) < len(class_names) else None


def read_image(path: Path) -> torch.Tensor:
    """One image file as a 1×C×H×W float batch in [0, 1] (grey stays one channel, colour is RGB)."""
    try:
        with Image.open(path) as img:
            array = np.array(img.convert("L" if img.mode in ("1", "L", "LA") else "RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as err:
        raise DDKitError(f"cannot read image {path} ({err}); remove or replace it") from None
    return images_to_nchw(array[None], str(path))


def fit_to_dataset(images: torch.Tensor, reference: ImageSet, options: ImportOptions, dataset: str, source: str) -> torch.Tensor:
    """Pixels in [0, 1] with the dataset's channels and size; another size is resized only when asked."""
    channels, height, width = reference.image_shape
    if images.shape[1] != channels:
        raise DDKitError(f"{source} images have {images.shape[1]} channel(s), {dataset}'s have {channels}; "
                         f"convert them, or {_wrong_dataset_fix(dataset)}")
    images = to_pixels(images, options.normalised, reference, dataset, source)
    if tuple(images.shape[2:]) == (height, width):
        return images
    if not options.resize:
        raise DDKitError(f"{source} images are {images.shape[2]}×{images.shape[3]}, {dataset}'s are {height}×{width}; "
                         f"pass --resize to resize them, or {_wrong_dataset_fix(dataset)}")
    # Antialiased bilinear weights are convex, so resized pixels stay within the source's range.
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True, align_corners=False)


def to_pixels(images: torch.Tensor, normalised: bool, reference: ImageSet, dataset: str, source: str) -> torch.Tensor:
    """Pixels in [0, 1]: undo the dataset's normalisation if asked, then check the range."""
    if normalised:
        images = images * torch.tensor(reference.std).view(1, -1, 1, 1) + torch.tensor(reference.mean).view(1, -1, 1, 1)
    low, high = float(images.min()), float(images.max())
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        hint = (f"they do not look normalised with {dataset}'s mean {reference.mean} and std {reference.std}" if normalised
                else f"pass --normalised if they are normalised with {dataset}'s mean and std, or divide 0-255 floats by 255")
        raise DDKitError(f"{source} pixels range from {low:.3g} to {high:.3g}, but they must lie in [0, 1]; {hint}")
    return images


def check_every_class(labels: torch.Tensor, class_names: tuple[str, ...], source: Path, dataset: str) -> None:
    counts = torch.bincount(labels, minlength=len(class_names))
    if bool((counts == 0).any()):
        empty = class_names[int(torch.nonzero(counts == 0)[0])]
        raise DDKitError(f"{source} has no images of class {empty!r}; a set needs every class of {dataset}, "
                         f"so add them or {_wrong_dataset_fix(dataset)}")


def soft_probabilities(soft: np.ndarray, logits: bool, images: int, classes: int, source: str) -> torch.Tensor:
    """Soft labels as an (N, K) float32 tensor of probability rows."""
    if soft.shape != (images, classes):
        raise DDKitError(f"{source} has shape {soft.shape}, expected ({images}, {classes}): a row per image, a column per class")
    if soft.dtype == np.bool_ or not np.issubdtype(soft.dtype, np.number) or not np.isfinite(soft).all():
        raise DDKitError(f"{source} must hold finite numbers")
    rows = torch.from_numpy(soft.astype(np.float32))
    if logits:
        return rows.softmax(dim=1)
    sums = rows.sum(dim=1)
    bad = torch.nonzero((rows < 0).any(dim=1) | ((sums - 1).abs() > PROBABILITY_TOLERANCE)).flatten()
    if bad.numel():
        row = int(bad[0])
        raise DDKitError(f"{source} row {row} is not a probability distribution (sums to {float(sums[row]):.3g}, "
                         f"smallest entry {float(rows[row].min()):.3g}); pass --soft-logits if the rows are logits")
    return rows


def _folder_naming(class_names: tuple[str, ...]) -> str:
    shown = ", ".join(map(repr, class_names[:4])) + (", …" if len(class_names) > 4 else "")
    return (f"name class folders by class name ({shown}), by index (0 to {len(class_names) - 1}) "
            f"or as ddkit writes them ({class_folder_name(0, class_names[0])!r})")


def _wrong_dataset_fix(dataset: str) -> str:
    return f"pass --dataset/--data-root for the dataset the set was made for (now: {dataset})"
