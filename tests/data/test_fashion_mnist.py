import gzip
import shutil

import pytest
import torch

from ddkit.data.fashion_mnist import CLASS_NAMES, DEFAULT_ROOT, load_fashion_mnist
from ddkit.errors import DDKitError


def test_real_files_load_with_expected_shapes(fmnist):
    assert len(fmnist.train) + len(fmnist.val) == 60000 and len(fmnist.test) == 10000
    assert fmnist.train.image_shape == (1, 28, 28) and fmnist.train.class_names == CLASS_NAMES
    assert fmnist.test.class_counts().tolist() == [1000] * 10
    assert 0.0 <= float(fmnist.train.images.min()) and float(fmnist.train.images.max()) <= 1.0
    assert abs(float(fmnist.train.images.mean()) - 0.2861) < 0.002


@pytest.fixture()
def copied(tmp_path):
    for path in DEFAULT_ROOT.glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_missing_directory_names_the_fix(tmp_path):
    with pytest.raises(DDKitError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_missing_file_names_the_fix(copied):
    (copied / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DDKitError, match="t10k-labels-idx1-ubyte.*missing.*apt-get install"):
        load_fashion_mnist(copied)


def test_wrong_magic_number_is_rejected(copied):
    path = copied / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # float instead of uint8
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DDKitError, match="wrong magic number"):
        load_fashion_mnist(copied)


def test_truncated_file_is_rejected(copied):
    path = copied / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DDKitError, match="expected 10000 items"):
        load_fashion_mnist(copied)


def test_corrupt_gzip_is_rejected(copied):
    (copied / "train-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DDKitError, match="corrupt"):
        load_fashion_mnist(copied)


def test_uncompressed_files_load_too(copied):
    for path in copied.glob("t10k-*.gz"):
        (copied / path.stem).write_bytes(gzip.decompress(path.read_bytes()))
        path.unlink()
    _, test = load_fashion_mnist(copied)
    assert len(test) == 10000 and test.labels.dtype == torch.int64
