import pytest
import torch
from torchvision.datasets import ImageFolder

from ddkit.data.distilled import DistilledSet, class_folder_name
from ddkit.errors import DDKitError


def make_set(with_soft=True):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(6, 1, 28, 28, generator=generator) * 0.7 + 0.5  # leaves [0, 1] on purpose
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    soft = torch.softmax(torch.randn(6, 3, generator=generator), 1) if with_soft else None
    return DistilledSet(images, labels, ("T-shirt/top", "../etc", "Bag"), (0.2861,), (0.353,), soft, {"method": "x"})


def test_save_load_round_trips_exactly(tmp_path):
    original = make_set()
    original.save(tmp_path / "set")
    loaded = DistilledSet.load(tmp_path / "set")
    assert torch.equal(loaded.images, original.images) and torch.equal(loaded.labels, original.labels)
    assert torch.equal(loaded.soft_labels, original.soft_labels)
    assert loaded.class_names == original.class_names and loaded.meta == {"method": "x"} and loaded.ipc == 2


def test_pngs_are_an_image_folder_in_class_order_with_safe_names(tmp_path):
    make_set().save(tmp_path / "set")
    folder = ImageFolder(str(tmp_path / "set" / "images"))
    assert folder.classes == ["0000_T-shirt_top", "0001_etc", "0002_Bag"]
    assert [label for _, label in folder.samples] == [0, 0, 1, 1, 2, 2]
    assert class_folder_name(7, "..") == "0007_class"
    assert not (tmp_path / "etc").exists()


def test_tampered_tensors_are_detected(tmp_path):
    make_set(with_soft=False).save(tmp_path / "set")
    with open(tmp_path / "set" / "tensors.safetensors", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(DDKitError, match="does not match its checksum"):
        DistilledSet.load(tmp_path / "set")
    with pytest.raises(DDKitError, match="not a distilled set"):
        DistilledSet.load(tmp_path)
