"""`ddkit import` through the real CLI: sets exported by a short script (PNG folder, .npz, .pt), then scored."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from ddkit.config import build
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.distilled import DistilledSet
from ddkit.data.fashion_mnist import CLASS_NAMES
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.models import ModelSpec

TINY_CLASSES = ("ant", "bee", "cat")


def export_pngs(root, images, labels, folder_names):
    """What another tool writes: one grey PNG per image under a folder per class."""
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / folder_names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"img{index:03d}.png")


@pytest.fixture()
def tiny_dataset(tmp_path):
    """A 3-class, 8×8 arrays dataset whose classes differ in brightness, and the import/evaluate options naming it."""
    rng = np.random.default_rng(0)

    def images(count):
        labels = np.arange(count) % 3
        return (rng.integers(0, 60, (count, 8, 8)) + 90 * labels[:, None, None]).astype(np.uint8), labels

    (x_train, y_train), (x_test, y_test) = images(30), images(12)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, class_names=np.array(TINY_CLASSES))
    return ["--dataset", "arrays", "--data-root", path, "--dataset.val_size=3"]


def set_arrays(count=6, size=8, seed=1):
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    return rng.integers(0, 256, (count, size, size), dtype=np.uint8), labels


def test_a_png_folder_imports_exactly_against_fashion_mnist(fmnist, tmp_path, cli):
    first = torch.stack([fmnist.test.indices_of(c)[0] for c in range(10)])
    pixels = (fmnist.test.images[first, 0] * 255).round().to(torch.uint8).numpy()
    # Every naming another tool might use: the name escaped, ddkit's NNNN_Name, the index, the name as it is.
    folders = ["T-shirt_top", "0001_Trouser", "2", *CLASS_NAMES[3:]]
    export_pngs(tmp_path / "src", pixels, list(range(10)), folders)
    code, text = cli("import", tmp_path / "src", "--out", tmp_path / "set")
    assert code == 0 and "10 images (1 per class)" in text, text
    imported = DistilledSet.load(tmp_path / "set")
    assert imported.class_names == CLASS_NAMES and sorted(imported.labels.tolist()) == list(range(10))
    read_back = (imported.images[:, 0] * 255).round().to(torch.uint8)
    assert torch.equal(read_back, torch.from_numpy(pixels)[imported.labels])  # each image under its own class
    assert np.array_equal(np.asarray(Image.open(tmp_path / "set" / "images" / "0000_T-shirt_top" / "00000.png")), pixels[0])
    meta = imported.meta
    assert meta["method"] == "import" and meta["source"] == str((tmp_path / "src").resolve()) and len(meta["source_sha256"]) == 64
    assert meta["dataset"]["name"] == "fashion-mnist" and meta["ipc"] == 1


def test_an_npz_of_uint8_imports_exactly_and_scores_under_a_frozen_preset(tiny_dataset, tmp_path, cli):
    images, labels = set_arrays()
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    code, text = cli("import", tmp_path / "set.npz", "--out", tmp_path / "set", *tiny_dataset)
    assert code == 0, text
    imported = DistilledSet.load(tmp_path / "set")
    assert torch.equal((imported.images[:, 0] * 255).round().to(torch.uint8), torch.from_numpy(images))
    assert imported.class_names == TINY_CLASSES and imported.soft_labels is None
    code, text = cli("evaluate", tmp_path / "set", "--preset", "hard-dsa-quick", "--device", "cpu")
    assert code == 0 and "hard-dsa-quick" in text and "QUICK" in text, text
    (result,) = (tmp_path / "set" / "eval" / "hard-dsa-quick").glob("*/summary.json")
    assert 0 <= json.loads(result.read_text())["mean"] <= 100
    # The same import again is the same set; another source at that --out is refused.
    code, text = cli("import", tmp_path / "set.npz", "--out", tmp_path / "set", *tiny_dataset)
    assert code == 0 and result.exists(), text
    np.savez(tmp_path / "other.npz", images=images[::-1], labels=labels)
    code, text = cli("import", tmp_path / "other.npz", "--out", tmp_path / "set", *tiny_dataset)
    assert code == 2 and "holds a set made with another source_sha256" in text and result.exists(), text


def test_a_pt_with_float_images_and_soft_labels_scores_under_soft_set(tiny_dataset, tmp_path, cli):
    images, labels = set_arrays()
    soft = torch.softmax(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    floats = torch.from_numpy(images).float()[:, None] / 255
    torch.save({"images": floats, "labels": torch.from_numpy(labels), "soft_labels": soft}, tmp_path / "set.pt")
    code, text = cli("import", tmp_path / "set.pt", "--out", tmp_path / "set", *tiny_dataset)
    assert code == 0 and "with soft labels" in text, text
    imported = DistilledSet.load(tmp_path / "set")
    assert torch.equal(imported.images, floats) and torch.equal(imported.soft_labels, soft)
    # soft-set-quick with a narrow student and one seed (the CLI run of a frozen preset is timed above).
    preset = load_eval_preset("soft-set-quick")
    preset = replace(preset, student=ModelSpec("convnet", {"width": 8}), seeds=[0], train=replace(preset.train, epochs=3))
    splits = load_dataset(build(DatasetConfig, imported.meta["dataset"]))
    (summary,) = evaluate_set(imported, preset, splits, tmp_path / "set" / "eval")
    assert summary.teacher is None and 0 <= summary.mean <= 100
    # Logits are softmaxed when asked; images normalised with the dataset's stats are mapped back to pixels.
    normalised = (floats - imported.mean[0]) / imported.std[0]
    torch.save({"images": normalised, "labels": torch.from_numpy(labels), "soft_labels": soft.log() + 3.0}, tmp_path / "z.pt")
    code, text = cli("import", tmp_path / "z.pt", "--out", tmp_path / "z", *tiny_dataset,
                       "--soft-logits", "--normalised")
    assert code == 0, text
    again = DistilledSet.load(tmp_path / "z")
    assert torch.allclose(again.soft_labels, soft, atol=1e-6) and torch.allclose(again.images, floats, atol=1e-6)


def test_a_soft_set_preset_on_a_set_without_soft_labels_is_one_line(tiny_dataset, tmp_path, cli):
    images, labels = set_arrays()
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    assert cli("import", tmp_path / "set.npz", "--out", tmp_path / "set", *tiny_dataset)[0] == 0
    code, text = cli("evaluate", tmp_path / "set", "--preset", "soft-set-quick")
    assert code == 2 and "learns from the set's own soft labels, but this set has none" in text, text


def test_resize_makes_other_sizes_fit(tiny_dataset, tmp_path, cli):
    images, labels = set_arrays(size=16)
    np.savez(tmp_path / "big.npz", images=images, labels=labels)
    code, text = cli("import", tmp_path / "big.npz", "--out", tmp_path / "set", *tiny_dataset, "--resize")
    assert code == 0, text
    assert DistilledSet.load(tmp_path / "set").images.shape == (6, 1, 8, 8)


def write_bad_source(tmp_path, case):
    """Each bad source, as a short export script would (mis)write it; returns its path."""
    images, labels = set_arrays()
    npz = tmp_path / "bad.npz"
    if case == "class count":
        np.savez(npz, images=images, labels=labels + 2)
    elif case == "missing class":
        np.savez(npz, images=images, labels=labels % 2)
    elif case == "size":
        np.savez(npz, images=set_arrays(size=12)[0], labels=labels)
    elif case == "channels":
        np.savez(npz, images=np.stack([images] * 3, axis=-1), labels=labels)
    elif case == "missing labels":
        np.savez(npz, images=images)
    elif case == "length":
        np.savez(npz, images=images, labels=labels[:5])
    elif case == "0-255 floats":
        np.savez(npz, images=images.astype(np.float32), labels=labels)
    elif case == "normalised 8-bit":
        np.savez(npz, images=images, labels=labels)
    elif case == "soft shape":
        np.savez(npz, images=images, labels=labels, soft_labels=np.full((6, 4), 0.25))
    elif case == "soft not probabilities":
        np.savez(npz, images=images, labels=labels, soft_labels=np.random.default_rng(0).normal(size=(6, 3)))
    elif case == "corrupt npz":
        npz.write_bytes(b"PK\x03\x04 this is no zip")
    elif case == "corrupt pt":
        npz = tmp_path / "bad.pt"
        npz.write_bytes(b"\x80\x02 pickled garbage")
    elif case == "unknown folder":
        export_pngs(tmp_path / "bad", images, labels, ["ant", "bee", "cow"])
        return tmp_path / "bad"
    return npz


@pytest.mark.parametrize(
    "case, extra, message",
    [
        ("class count", [], "bad.npz:labels holds label 4, but there are only 3 classes, so labels must be below 3; pass --dataset/--data-root"),
        ("missing class", [], "has no images of class 'cat'; a set needs every class of arrays"),
        ("size", [], "bad.npz:images images are 12×12, arrays's are 8×8; pass --resize to resize them"),
        ("channels", [], "images have 3 channel(s), arrays's have 1; convert them"),
        ("missing labels", [], "bad.npz lacks 'labels' (it holds 'images'); it needs 'images', 'labels'"),
        ("length", [], "has 6 images but {tmp}/bad.npz:labels has 5 labels"),
        ("0-255 floats", [], "pixels range from 0 to 255, but they must lie in [0, 1]; pass --normalised if"),
        ("normalised 8-bit", ["--normalised"], "holds 8-bit pixels, which cannot be normalised; drop --normalised"),
        ("soft shape", [], "bad.npz:soft_labels has shape (6, 4), expected (6, 3)"),
        ("soft not probabilities", [], "bad.npz:soft_labels row 0 is not a probability distribution"),
        ("corrupt npz", [], "bad.npz is not a readable .npz file"),
        ("corrupt pt", [], "bad.pt is corrupt or does not load with torch.load(weights_only=True)"),
        ("unknown folder", [], "{tmp}/bad/cow matches no class; name class folders by class name ('ant', 'bee', 'cat'), by index (0 to 2)"),
    ],
)
def test_bad_sources_are_one_line(case, extra, message, tiny_dataset, tmp_path, cli):
    source = write_bad_source(tmp_path, case)
    code, text = cli("import", source, "--out", tmp_path / "set", *tiny_dataset, *extra)
    assert code == 2 and message.format(tmp=tmp_path) in text, text
    assert "Traceback" not in text and not (tmp_path / "set").exists()


def test_an_existing_folder_that_is_not_a_set_is_left_alone(tmp_path, tiny_dataset, cli):
    images, labels = set_arrays()
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code, text = cli("import", tmp_path / "set.npz", "--out", tmp_path / "mine", *tiny_dataset)
    assert code == 2 and "mine already exists and is not a distilled set made by ddkit" in text, text
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
