"""CIFAR-style arrays in one .npz: x_train, y_train, x_test, y_test (+ optional class_names)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from ddkit.data.images import ImageSet, channel_stats
from ddkit.errors import DDKitError

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def _to_nchw(array: np.ndarray, source: str) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
        array = array.transpose(0, 3, 1, 2)
    if array.ndim != 4:
        raise DDKitError(f"{source} must be N×H×W, N×H×W×C or N×C×H×W, got shape {array.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.float().div_(255) if array.dtype == np.uint8 else tensor.float()


def load_arrays(path: Path) -> tuple[ImageSet, ImageSet]:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in REQUIRED if k not in archive]
            if missing:
                raise DDKitError(f"{path} lacks arrays {', '.join(missing)}; it needs {', '.join(REQUIRED)}")
            data = {k: archive[k] for k in archive.files}
    except FileNotFoundError:
        raise DDKitError(f"array file {path} does not exist") from None
    except (zipfile.BadZipFile, ValueError, OSError) as err:
        raise DDKitError(f"{path} is not a readable .npz file ({err})") from None
    labels = [torch.from_numpy(data[k].astype(np.int64)).flatten() for k in ("y_train", "y_test")]
    num_classes = int(max(int(labels[0].max()), int(labels[1].max())) + 1)
    names = tuple(str(n) for n in data["class_names"]) if "class_names" in data else tuple(str(i) for i in range(num_classes))
    train_x, test_x = _to_nchw(data["x_train"], f"{path}:x_train"), _to_nchw(data["x_test"], f"{path}:x_test")
    mean, std = channel_stats(train_x)
    return ImageSet(train_x, labels[0], names, mean, std), ImageSet(test_x, labels[1], names, mean, std)
