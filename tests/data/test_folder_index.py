"""Image folders as an index decoded on demand: cache, fingerprint, streaming reads, bad files."""

import numpy as np
import pytest
import torch
from PIL import Image

import ddkit.data.folder_index as folder_index
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.folder_index import index_dir
from ddkit.data.image_folder import load_image_folder
from ddkit.data.images import channel_stats
from ddkit.errors import DDKitError
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set


def make_tree(root, classes=("ant", "bee", "cat"), per_class=4, val_per_class=2):
    """A few small JPEGs and PNGs of different sizes (so the resize and crop matter)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (10 + i, 14 + 2 * i, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")


def config(root, **options):
    return DatasetConfig(**{"name": "image-folder", "root": str(root), "image_size": 8, "val_size": 3, **options})


@pytest.fixture()
def counted(monkeypatch):
    """Counts index builds and image decodes (in this process: workers=0)."""
    counts = {"builds": 0, "decodes": 0}
    build, decode = folder_index.build_index, folder_index.decode_image

    def counting_build(*args):
        counts["builds"] += 1
        return build(*args)

    def counting_decode(*args):
        counts["decodes"] += 1
        return decode(*args)

    monkeypatch.setattr(folder_index, "build_index", counting_build)
    monkeypatch.setattr(folder_index, "decode_image", counting_decode)
    return counts


def everything(images):
    return images.load(torch.arange(len(images)))


def test_index_is_cached_reused_and_rebuilt_when_a_file_is_added(tmp_path, counted):
    make_tree(tmp_path)
    first = load_dataset(config(tmp_path))
    assert counted["builds"] == 2  # train and val
    assert len(list(index_dir().glob("*.npz"))) >= 2
    again = load_dataset(config(tmp_path))
    assert counted["builds"] == 2 and again.fingerprint == first.fingerprint
    assert torch.equal(everything(again.train), everything(first.train))
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(tmp_path / "train" / "bee" / "new.png")
    grown = load_dataset(config(tmp_path))
    assert counted["builds"] == 3  # only train changed
    assert len(grown.train) == len(first.train) + 1 and grown.fingerprint != first.fingerprint


def test_fingerprint_names_files_labels_and_geometry_not_the_location(tmp_path):
    make_tree(tmp_path / "a")
    splits = load_dataset(config(tmp_path / "a"))
    assert splits.fingerprint.startswith(f"image-folder-{len(splits.train)}-")
    assert load_dataset(config(tmp_path / "a", image_size=10)).fingerprint != splits.fingerprint
    (tmp_path / "a").rename(tmp_path / "b")  # a moved tree keeps its paths, sizes and mtimes
    assert load_dataset(config(tmp_path / "b")).fingerprint == splits.fingerprint


def test_train_per_class_and_val_carve_decode_nothing(tmp_path, counted):
    make_tree(tmp_path)
    load_dataset(config(tmp_path))  # first load: index, and the stats sample is decoded once
    counted["decodes"] = 0
    splits = load_dataset(config(tmp_path, train_per_class=1))
    assert counted["decodes"] == 0 and len(splits.train) == 3
    assert everything(splits.train).shape == (3, 3, 8, 8) and counted["decodes"] == 3


def test_geometry_is_short_side_resize_then_centre_crop(tmp_path):
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white middle third: all the centre crop keeps of a 3:1 picture
    for split in ("train", "val"):
        (tmp_path / split / "only").mkdir(parents=True)
        Image.fromarray(wide).save(tmp_path / split / "only" / "0.png")
    _, test, _ = load_image_folder(tmp_path, image_size=5, grayscale=True)
    pixels = everything(test)
    assert pixels.shape == (1, 1, 5, 5) and float(pixels.min()) > 0.9 and pixels.is_contiguous()


def test_batches_with_and_without_workers_give_the_same_tensors(tmp_path):
    make_tree(tmp_path)
    train = load_dataset(config(tmp_path)).train
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))
    plain = list(train.batches(4, order))
    forked = list(train.batches(4, order, workers=1))
    assert [len(i) for i, _, _ in plain] == [4, 4, 1]
    for (i0, x0, y0), (i1, x1, y1) in zip(plain, forked, strict=True):
        assert torch.equal(i0, i1) and torch.equal(x0, x1) and torch.equal(y0, y1)
        assert torch.equal(x0, train.load(i0)) and torch.equal(y0, train.labels[i0])


def test_sample_is_seeded_and_within_the_class(tmp_path):
    make_tree(tmp_path, per_class=6)
    train = load_dataset(config(tmp_path)).train
    picks = train.sample(1, 3, seed=7)
    assert torch.equal(picks, train.sample(1, 3, seed=7)) and (train.labels[picks] == 1).all()
    assert len(picks.unique()) == 3
    assert any(not torch.equal(picks, train.sample(1, 3, seed=s)) for s in range(8, 12))
    assert sorted(train.sample(1, 100, seed=7).tolist()) == train.indices_of(1).tolist()


def test_stats_are_estimated_from_a_sample_and_kept_with_the_index(tmp_path, counted):
    make_tree(tmp_path)
    train, _, _ = load_image_folder(tmp_path, image_size=8)
    assert counted["decodes"] == len(train)  # fewer than STATS_SAMPLE images: the sample is all of them
    mean, std = channel_stats(everything(train))
    assert train.mean == pytest.approx(mean, abs=2e-4) and train.std == pytest.approx(std, abs=2e-4)
    counted["decodes"] = 0
    again, _, _ = load_image_folder(tmp_path, image_size=8)
    assert counted["decodes"] == 0 and (again.mean, again.std) == (train.mean, train.std)


def test_a_corrupt_file_is_named_when_read_and_skipped_when_asked(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "val" / "bee" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    test = load_dataset(config(tmp_path)).test
    for workers in (0, 1):
        with pytest.raises(DDKitError, match=r"^cannot read image .*broken\.jpg .*remove or replace it$"):
            list(test.batches(4, workers=workers))
    skipping = load_dataset(config(tmp_path, skip_unreadable=True))
    assert skipping.meta == {"skipped_unreadable": {"train": 0, "val": 1}}
    assert everything(skipping.test).shape == (6, 3, 8, 8)


def test_an_empty_file_is_refused_at_index_time(tmp_path):
    make_tree(tmp_path)
    (tmp_path / "train" / "cat" / "empty.png").write_bytes(b"")
    with pytest.raises(DDKitError, match=r"image .*empty\.png is empty \(0 bytes\); .*skip_unreadable: true$"):
        load_dataset(config(tmp_path))
    assert load_dataset(config(tmp_path, skip_unreadable=True)).meta["skipped_unreadable"]["train"] == 1


def test_image_size_is_required_for_folders(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(DDKitError, match=r"needs an image size .*--dataset.image_size=N"):
        load_dataset(DatasetConfig(name="image-folder", root=str(tmp_path), val_size=3))


def test_folder_sets_have_no_whole_tensor(tmp_path):
    make_tree(tmp_path)
    with pytest.raises(DDKitError, match="load\\(\\), batches\\(\\) or sample\\(\\)"):
        _ = load_dataset(config(tmp_path)).train.images


def test_fashion_mnist_keeps_its_fingerprint_and_float_pixels(fmnist):
    # Cached teachers are keyed by this fingerprint: it must not change with the storage.
    assert fmnist.fingerprint == "fashion-mnist-55000-d062ff506e1f"
    raw = fmnist.train.pixels.data[:5]
    assert raw.dtype == torch.uint8
    assert torch.equal(fmnist.train.load(torch.arange(5)), raw.float() / 255)


def test_a_set_from_a_folder_records_skipped_files_and_its_geometry(tmp_path):
    make_tree(tmp_path / "tree")
    (tmp_path / "tree" / "train" / "ant" / "broken.png").write_bytes(b"not a png")
    cfg = config(tmp_path / "tree", skip_unreadable=True)
    splits = load_dataset(cfg)
    result = make_set("random", {}, 1, 0, splits, cfg, TeacherPool(splits, tmp_path / "cache"), tmp_path / "set")
    assert result.meta["dataset_facts"] == {"skipped_unreadable": {"train": 1, "val": 0}}
    assert result.meta["dataset"]["image_size"] == 8 and result.images.shape == (3, 3, 8, 8)
    assert torch.equal(result.images, splits.train.load(torch.tensor(result.meta["source_indices"])))
