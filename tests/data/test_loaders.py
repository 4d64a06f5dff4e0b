import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.arrays import load_arrays
from ddkit.data.image_folder import load_image_folder
from ddkit.errors import DDKitError


def make_tree(root, classes=("zebra", "ant", "Mole rat"), per_class=3):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def test_image_folder_sorts_classes_and_resizes(tmp_path):
    make_tree(tmp_path)
    train, test, facts = load_image_folder(tmp_path, image_size=16)
    assert train.class_names == ("Mole rat", "ant", "zebra")
    assert train.load(torch.arange(9)).shape == (9, 3, 16, 16) and test.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert facts == {"skipped_unreadable": {"train": 0, "val": 0}}
    assert len(train.mean) == 3


def test_image_folder_errors_are_clear(tmp_path):
    with pytest.raises(DDKitError, match="does not exist"):
        load_image_folder(tmp_path / "none", image_size=16)
    make_tree(tmp_path)
    (tmp_path / "val" / "ant" / "9.png").write_bytes(b"garbage")
    _, test, _ = load_image_folder(tmp_path, image_size=16)  # indexing does not decode; reading does
    with pytest.raises(DDKitError, match="cannot read image .*9.png"):
        test.load(torch.arange(len(test)))


def test_arrays_npz_hwc_uint8(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "data.npz"
    np.savez(path, x_train=rng.integers(0, 255, (40, 8, 8, 3), dtype=np.uint8), y_train=np.arange(40) % 4,
             x_test=rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8), y_test=np.arange(8) % 4)
    train, test = load_arrays(path)
    assert train.images.shape == (40, 3, 8, 8) and float(train.images.max()) <= 1.0
    assert train.class_names == ("0", "1", "2", "3") and test.labels.dtype == torch.int64
    splits = load_dataset(DatasetConfig(name="arrays", root=str(path), val_size=8))
    assert len(splits.train) == 32 and splits.val.class_counts().tolist() == [2, 2, 2, 2]


def test_arrays_missing_key_and_bad_file(tmp_path):
    np.savez(tmp_path / "half.npz", x_train=np.zeros((2, 4, 4)))
    with pytest.raises(DDKitError, match="lacks arrays y_train"):
        load_arrays(tmp_path / "half.npz")
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(DDKitError, match="not a readable .npz"):
        load_arrays(tmp_path / "bad.npz")


def test_unknown_dataset_lists_choices():
    with pytest.raises(DDKitError, match="unknown dataset 'cifar'; choose one of: arrays, class-list, fashion-mnist, image-folder"):
        load_dataset(DatasetConfig(name="cifar"))
