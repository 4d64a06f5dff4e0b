"""Bad datasets and distilled sets are refused with one line that names the cause (tiny generated files)."""

import gzip
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.arrays import load_arrays
from ddkit.data.distilled import TENSORS, DistilledSet
from ddkit.data.fashion_mnist import load_fashion_mnist
from ddkit.data.image_folder import load_image_folder
from ddkit.data.images import ImageSet
from ddkit.data.splits import carve_validation, largest_val_size
from ddkit.errors import DDKitError
from ddkit.runs import sha256_file


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


# --- Fashion-MNIST files ---------------------------------------------------------------------


def gz_with_broken(part: str) -> bytes:
    raw = bytearray(gzip.compress(bytes(range(256)) * 4))
    if part == "deflate":
        raw[10] = 0xFF  # first deflate block header: final block of the reserved type 3
    else:
        raw[-8] ^= 0x01  # the CRC-32 in the trailer
    return bytes(raw)


@pytest.mark.parametrize("part, cause", [("deflate", "invalid block type"), ("crc", "CRC check failed")])
def test_a_corrupt_fashion_mnist_gzip_is_one_line(tmp_path, part, cause):
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(gz_with_broken(part))
    with pytest.raises(DDKitError) as err:
        load_fashion_mnist(tmp_path)
    assert "train-images-idx3-ubyte.gz is corrupt" in one_line(err) and cause in one_line(err)
    assert "apt-get install dataset-fashion-mnist" in one_line(err)


# --- --dataset arrays ------------------------------------------------------------------------


def write_arrays(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (12, 6, 6), dtype=np.uint8), "y_train": np.arange(12) % 3,
        "x_test": rng.integers(0, 256, (6, 6, 6), dtype=np.uint8), "y_test": np.arange(6) % 3,
    }
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


NAN_PIXELS = np.where(np.eye(6)[None].repeat(12, 0) == 1, np.nan, 0.5)


@pytest.mark.parametrize(
    "changes, cause",
    [
        ({"y_train": np.arange(11) % 3}, "x_train has 12 images but "),
        ({"y_test": np.array([0, 1, 2, 0, -1, 1])}, "y_test holds the negative label -1"),
        ({"y_train": np.arange(12) % 3 + 0.5}, "y_train holds non-integer labels (e.g. 0.5)"),
        ({"y_train": np.eye(3)[np.arange(12) % 3]}, "y_train must hold one class index per image, got shape (12, 3)"),
        ({"y_train": np.array(["a"] * 12)}, "y_train must hold integer class indices, got dtype <U1"),
        ({"x_train": NAN_PIXELS}, "x_train has 72 NaN or infinite pixel values"),
        ({"x_test": np.full((6, 6, 6), np.inf)}, "x_test has 216 NaN or infinite pixel values"),
        ({"x_test": np.zeros((6, 8, 8), np.uint8)}, "x_train images are 6×6 with 1 channel but x_test images are 8×8 with 1 channel"),
        ({"x_test": np.zeros((6, 6, 6, 3), np.uint8)}, "x_test images are 6×6 with 3 channels"),
        ({"class_names": np.array(["a", "b"])}, "y_train holds label 2, but there are only 2 classes, so labels must be below 2"),
        ({"class_names": np.array(["a", "b", "a"])}, "names class 'a' more than once"),
        ({"x_train": np.zeros((0, 6, 6), np.uint8), "y_train": np.zeros(0, np.int64)}, "x_train is empty"),
        ({"y_test": np.zeros(0, np.int64)}, "y_test is empty"),
    ],
)
def test_bad_arrays_name_the_cause(tmp_path, changes, cause):
    with pytest.raises(DDKitError) as err:
        load_arrays(write_arrays(tmp_path / "data.npz", **changes))
    assert cause in one_line(err)


def test_whole_number_float_labels_are_accepted(tmp_path):
    train, _ = load_arrays(write_arrays(tmp_path / "data.npz", y_train=(np.arange(12) % 3).astype(np.float32)))
    assert train.labels.dtype == torch.int64 and train.labels.tolist() == [0, 1, 2] * 4


def test_a_bare_npy_is_not_taken_for_an_npz(tmp_path):
    np.save(tmp_path / "data.npy", np.zeros(3))
    (tmp_path / "data.npz").write_bytes((tmp_path / "data.npy").read_bytes())
    with pytest.raises(DDKitError, match="holds one bare array"):
        load_arrays(tmp_path / "data.npz")


# --- image folders ---------------------------------------------------------------------------


def make_tree(root, train=("ant", "bee"), val=("ant", "bee"), empty=()):
    for split, classes in (("train", train), ("val", val)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(0 if (split, name) in empty else 2):
                Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")


def test_an_empty_val_class_is_a_warning(tmp_path, caplog):
    make_tree(tmp_path, empty={("val", "bee")})
    with caplog.at_level(logging.WARNING, logger="ddkit.data.folder_index"):
        _, test, _ = load_image_folder(tmp_path, image_size=8)
    assert test.labels.tolist() == [0, 0]
    assert any("class 'bee' has none in the val split" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "train, val, cause",
    [
        (("ant", "bee"), ("ant", "bee", "cat"), "class folder 'cat' is only in {root}/val; train and val must hold the same class folders"),
        (("ant", "bee"), ("ant",), "class folder 'bee' is only in {root}/train"),
    ],
)
def test_train_and_val_classes_must_agree(tmp_path, train, val, cause):
    make_tree(tmp_path, train, val)
    with pytest.raises(DDKitError) as err:
        load_image_folder(tmp_path, image_size=8)
    assert cause.format(root=tmp_path) in one_line(err)


# --- IPC and val_size name the class that limits them ----------------------------------------


def image_set(counts, names=("ant", "bee", "cat")):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return ImageSet(torch.zeros(len(labels), 1, 2, 2), labels, names, (0.0,), (1.0,))


def test_check_ipc_names_an_empty_class():
    with pytest.raises(DDKitError) as err:
        image_set([3, 0, 2]).check_ipc(1)
    assert "class 'bee' has no training images" in one_line(err) and "from 1 to 0" not in one_line(err)
    with pytest.raises(DDKitError, match=r"the smallest class has 2 training images \('cat'\); choose an IPC from 1 to 2"):
        image_set([3, 4, 2]).check_ipc(3)


def test_val_size_error_names_the_class_and_the_largest_val_size():
    with pytest.raises(DDKitError) as err:
        carve_validation(image_set([5, 3, 4]), 8)
    assert "leaves class 'bee' with no training images (it has 3); choose a val_size of at most 7" in one_line(err)
    train, val = carve_validation(image_set([5, 3, 4]), 7)  # the largest named is a valid one
    assert val.class_counts().tolist() == [3, 2, 2] and train.class_counts().tolist() == [2, 1, 2]
    with pytest.raises(DDKitError) as err:
        carve_validation(image_set([5, 0, 4]), 1)
    assert "class 'bee' has no training images, so no val_size can leave it one" in one_line(err)


def test_largest_val_size_is_the_last_that_works():
    def works(val_size, counts):
        k = len(counts)
        return all(val_size // k + (c < val_size % k) < n for c, n in enumerate(counts))

    for counts in ([5, 3, 4], [1, 1], [2, 1, 3], [4, 4, 4], [1, 7]):
        largest = largest_val_size(counts)
        assert (largest < 1 or works(largest, counts)) and not works(largest + 1, counts), counts


def test_an_arrays_dataset_with_an_empty_class_names_it(tmp_path):
    path = write_arrays(tmp_path / "data.npz", y_train=np.array([0, 2] * 6), class_names=np.array(["ant", "bee", "cat"]))
    with pytest.raises(DDKitError, match="class 'bee' has no training images"):
        load_dataset(DatasetConfig(name="arrays", root=str(path), val_size=3))


# --- distilled sets --------------------------------------------------------------------------


def saved_set(path, soft=True):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    soft_labels = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), 1) if soft else None
    DistilledSet(torch.rand(6, 1, 4, 4), labels, ("a", "b", "c"), (0.5,), (0.25,), soft_labels, {"method": "x"}).save(path)
    return path


def rewrite_manifest(path, change):
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps(change(manifest)))


def rewrite_tensors(path, change):
    """Replace the tensors as another tool would, with the checksum updated to match."""
    from safetensors.torch import load_file

    tensors = change(load_file(str(path / TENSORS)))
    save_file(tensors, str(path / TENSORS))
    rewrite_manifest(path, lambda m: m | {"checksums": {TENSORS: sha256_file(path / TENSORS)}})


@pytest.mark.parametrize(
    "change, cause",
    [
        (lambda m: [m], "is not a set manifest (a JSON object), it holds a list"),
        (lambda m: {k: v for k, v in m.items() if k not in ("mean", "std")}, "lacks the key(s) 'mean', 'std'"),
        (lambda m: {k: v for k, v in m.items() if k != "checksums"}, "lacks the key(s) 'checksums'"),
        (lambda m: m | {"format": "other/2"}, "has format 'other/2', expected 'ddkit-distilled/1'"),
        (lambda m: m | {"class_names": "abc"}, "has a malformed 'class_names'"),
        (lambda m: m | {"checksums": {}}, "has a malformed 'checksums'"),
        (lambda m: m | {"meta": [1]}, "has a malformed 'meta'"),
        (lambda m: m | {"class_names": ["a", "b"]}, "label 2 is outside the set's 2 classes (0 to 1)"),
        (lambda m: m | {"mean": [0.5, 0.5, 0.5]}, "mean and std have 3 and 1 values for 1 channels"),
    ],
)
def test_a_bad_manifest_is_one_line(tmp_path, change, cause):
    path = saved_set(tmp_path / "set", soft=False)
    rewrite_manifest(path, change)
    with pytest.raises(DDKitError) as err:
        DistilledSet.load(path)
    assert cause in one_line(err) and "re-create the set" in one_line(err)


@pytest.mark.parametrize(
    "change, cause",
    [
        (lambda t: {k: v for k, v in t.items() if k != "images"}, "lacks the tensor 'images'"),
        (lambda t: {k: v for k, v in t.items() if k != "labels"}, "lacks the tensor 'labels'"),
        (lambda t: t | {"labels": torch.tensor([0, 0, 1, 1, 2, 3])}, "label 3 is outside the set's 3 classes"),
        (lambda t: t | {"labels": torch.tensor([0, -1, 1, 1, 2, 2])}, "label -1 is outside the set's 3 classes"),
        (lambda t: t | {"labels": torch.tensor([0, 0, 1, 1, 2])}, "6 images but 5 labels"),
        (lambda t: t | {"labels": t["labels"].float()}, "labels must be N integers, got torch.float32"),
        (lambda t: t | {"images": t["images"][:, 0]}, "images must be N×C×H×W floats"),
        (lambda t: t | {"soft_labels": t["soft_labels"][:, :2].contiguous()}, "soft_labels have shape (6, 2), expected (6, 3)"),
        (lambda t: t | {"soft_labels": t["soft_labels"][:5].contiguous()}, "soft_labels have shape (5, 3), expected (6, 3)"),
        (lambda t: t | {"soft_labels": t["soft_labels"] * float("nan")}, "soft_labels hold NaN or infinite values"),
    ],
)
def test_bad_tensors_with_an_intact_checksum_are_one_line(tmp_path, change, cause):
    path = saved_set(tmp_path / "set")
    rewrite_tensors(path, change)
    with pytest.raises(DDKitError) as err:
        DistilledSet.load(path)
    assert cause in one_line(err)


def test_narrower_tensors_written_by_a_tool_load_at_full_width(tmp_path):
    path = saved_set(tmp_path / "set")
    rewrite_tensors(path, lambda t: t | {"labels": t["labels"].int(), "images": t["images"].half()})
    loaded = DistilledSet.load(path)
    assert loaded.labels.dtype == torch.int64 and loaded.images.dtype == torch.float32
