import pytest
import torch
import yaml
from PIL import Image

from ddkit.data import DatasetConfig, load_dataset
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize

WNIDS = ["n01440764", "n02102040"]


@pytest.fixture()
def classes(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({"wnids": WNIDS[::-1]}))
    return str(path)


def test_a_class_list_dataset_has_classes_and_imagenet_stats_but_no_training_images(classes, tmp_path):
    splits = load_dataset(DatasetConfig(name="class-list", classes=classes, image_size=12))
    assert splits.train.class_names == tuple(WNIDS) and len(splits.train) == len(splits.val) == len(splits.test) == 0
    assert splits.train.image_shape == (3, 12, 12) and splits.train.mean == (0.485, 0.456, 0.406)
    assert load_dataset(DatasetConfig(name="class-list", image_size=8)).train.num_classes == 1000  # imagenet1k by default
    for c, wnid in enumerate(WNIDS):
        (tmp_path / "val" / wnid).mkdir(parents=True)
        Image.new("RGB", (16, 20), (c * 200, 0, 0)).save(tmp_path / "val" / wnid / "a.JPEG")
    test = load_dataset(DatasetConfig(name="class-list", classes=classes, image_size=12, root=str(tmp_path))).test
    assert test.labels.tolist() == [0, 1] and test.load(torch.tensor([1])).shape == (1, 3, 12, 12)
    assert not (tmp_path / "train").exists()


def test_a_missing_val_class_or_a_method_that_reads_training_images_is_a_one_line_error(classes, tmp_path):
    (tmp_path / "val" / WNIDS[0]).mkdir(parents=True)
    with pytest.raises(DDKitError, match="has no folder 'n02102040'"):
        load_dataset(DatasetConfig(name="class-list", classes=classes, image_size=12, root=str(tmp_path)))
    splits = load_dataset(DatasetConfig(name="class-list", classes=classes, image_size=12))
    for method in ("random", "prism"):
        with pytest.raises(DDKitError, match=r"reads training images .* has none .* data-free method \(prism-dfkd, text-diffusion\)") as err:
            synthesize(method, {}, SynthesisContext(splits, 1, 0, teacher=None))
        assert "\n" not in str(err.value)


def test_without_test_images_or_with_a_teacher_to_train_the_fix_is_named(classes, tmp_path):
    from ddkit.data import DistilledSet
    from ddkit.evaluate import evaluate_set, load_eval_preset
    from ddkit.models.teachers import load_or_squeeze, teacher_config

    splits = load_dataset(DatasetConfig(name="class-list", classes=classes, image_size=12))
    with pytest.raises(DDKitError, match="no training images; give a pretrained teacher"):
        load_or_squeeze(teacher_config("convnet-bn"), splits, tmp_path)
    distilled = DistilledSet(torch.rand(2, 3, 12, 12), torch.tensor([0, 1]), splits.train.class_names, splits.train.mean, splits.train.std)
    with pytest.raises(DDKitError, match="no test images to score students on; pass --data-root"):
        evaluate_set(distilled, load_eval_preset("hard-dsa-quick"), splits, tmp_path / "eval")
