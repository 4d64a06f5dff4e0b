"""CIFAR-style arrays in one .npz: x_train, y_train, x_test, y_test (+ optional class_names).

Labels are class indices: integers, or floats holding whole numbers (as some tools save them).
The checks here are shared with `ddkit import`, which reads images and labels the same way.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ddkit.data.images import ImageSet, channel_stats, unit_float
from ddkit.errors import DDKitError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def images_to_nchw(array: np.ndarray, source: str) -> torch.Tensor:
    """N×H×W, N×H×W×C or N×C×H×W numbers as NCHW float32; uint8 is scaled to [0, 1]."""
    return unit_float(stored_pixels(array, source))


def stored_pixels(array: np.ndarray, source: str) -> torch.Tensor:
    """N×H×W, N×H×W×C or N×C×H×W numbers as NCHW: uint8 kept (a quarter of the memory), the rest float32."""
    if array.size == 0:
        raise DDKitError(f"{source} is empty (shape {array.shape}); it needs at least one image")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
        raise DDKitError(f"{source} must hold pixel numbers, got dtype {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise DDKitError(f"{source} has {bad} NaN or infinite pixel values; replace them with finite ones")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4:
        raise DDKitError(f"{source} must be N×H×W, N×H×W×C or N×C×H×W, got shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor if array.dtype == np.uint8 else tensor.float()


def class_indices(array: np.ndarray, source: str) -> torch.Tensor:
    """One non-negative integer class per image (shape (N,) or (N, 1)) as int64."""
    if array.size == 0:
        raise DDKitError(f"{source} is empty; it needs one class index per image")
    if array.ndim > 2 or (array.ndim == 2 and array.shape[1] != 1):
        raise DDKitError(f"{source} must hold one class index per image, got shape {array.shape} (one-hot? store the argmax)")
    array = array.reshape(-1)
    if np.issubdtype(array.dtype, np.floating):
        whole = np.isfinite(array) & (array == np.round(array))
        if not whole.all():
            raise DDKitError(f"{source} holds non-integer labels (e.g. {array[~whole][0]}); labels must be class indices 0, 1, …")
    elif array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise DDKitError(f"{source} must hold integer class indices, got dtype {array.dtype}")
    labels = torch.from_numpy(array.astype(np.int64))
    if int(labels.min()) < 0:
        raise DDKitError(f"{source} holds the negative label {int(labels.min())}; labels must be class indices 0, 1, …")
    return labels


def check_pairs(images: torch.Tensor, labels: torch.Tensor, images_source: str, labels_source: str) -> None:
    if images.shape[0] != labels.shape[0]:
        raise DDKitError(
            f"{images_source} has {images.shape[0]} images but {labels_source} has {labels.shape[0]} labels; "
            "they must pair up one to one"
        )


def check_label_range(labels: torch.Tensor, class_names: tuple[str, ...], source: str, fix: str) -> None:
    if int(labels.max()) >= len(class_names):
        raise DDKitError(
            f"{source} holds label {int(labels.max())}, but there are only {len(class_names)} classes, "
            f"so labels must be below {len(class_names)}; {fix}"
        )


def _class_names(data: dict[str, np.ndarray], num_labels: int, source: str) -> tuple[str, ...]:
    if "class_names" not in data:
        return tuple(str(i) for i in range(num_labels))
    names = tuple(str(n) for n in np.atleast_1d(data["class_names"]))
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DDKitError(f"{source} names class {duplicates[0]!r} more than once; class names must be unique")
    return names


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an .npz file, read without pickle."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DDKitError(f"{path} holds one bare array; it must be an .npz archive of named arrays (np.savez)")
        with archive:
            return {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise DDKitError(f"array file {path} does not exist") from None
    # Arrays are read lazily, so a damaged member fails here as a zip, deflate or short-read error.
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, zlib.error) as err:
        raise DDKitError(f"{path} is not a readable .npz file ({err})") from None


def load_arrays(path: Path) -> tuple[ImageSet, ImageSet]:
    path = Path(path)
    data = read_npz(path)
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise DDKitError(f"{path} lacks arrays {', '.join(missing)}; it needs {', '.join(REQUIRED)}")
    train_x, test_x = stored_pixels(data["x_train"], f"{path}:x_train"), stored_pixels(data["x_test"], f"{path}:x_test")
    train_y, test_y = class_indices(data["y_train"], f"{path}:y_train"), class_indices(data["y_test"], f"{path}:y_test")
    check_pairs(train_x, train_y, f"{path}:x_train", f"{path}:y_train")
    check_pairs(test_x, test_y, f"{path}:x_test", f"{path}:y_test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DDKitError(
            f"{path}: x_train images are {_shape_text(train_x)} but x_test images are {_shape_text(test_x)}; "
            "train and test need the same image size and channels"
        )
    names = _class_names(data, int(max(train_y.max(), test_y.max())) + 1, f"{path}:class_names")
    for labels, key in ((train_y, "y_train"), (test_y, "y_test")):
        check_label_range(labels, names, f"{path}:{key}", "add its name to class_names or fix the labels")
    mean, std = channel_stats(unit_float(train_x))
    return ImageSet(train_x, train_y, names, mean, std), ImageSet(test_x, test_y, names, mean, std)


def _shape_text(images: torch.Tensor) -> str:
    channels, height, width = images.shape[1:]
    return f"{height}×{width} with {channels} channel{'s' if channels != 1 else ''}"
