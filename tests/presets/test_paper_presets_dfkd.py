"""`ddkit run prism-dfkd-imagenet` end to end, data-free: a tiny random Stable Diffusion pipeline
directory, a tiny random torchvision ResNet-18 weight file as tv-resnet18, a class list of three
ImageNet ids, and a data root holding val/ only, so no training image can be read. Overrides only
shrink sizes and steps; the students train under a one-epoch, one-seed copy of `imagenet-soft`."""

import json

import pytest
import torch
import yaml
from PIL import Image

from ddkit.data import DistilledSet
from ddkit.data.class_lists import load_class_list
from ddkit.evaluate.presets import eval_preset_path

WNIDS = load_class_list("imagenette").wnids[:3]


def val_tree(root, wnids, size=20, per_class=2):
    """An ImageNet tree with a val/ split alone."""
    generator = torch.Generator().manual_seed(0)
    for c, wnid in enumerate(wnids):
        (root / "val" / wnid).mkdir(parents=True)
        for i in range(per_class):
            pixels = (torch.rand(size, size, 3, generator=generator) * 80 + c * 60).clamp(0, 255).byte().numpy()
            Image.fromarray(pixels).save(root / "val" / wnid / f"ILSVRC2012_val_{c}{i}.JPEG")
    return root


@pytest.mark.e2e
def test_prism_dfkd_imagenet_runs_from_the_class_list_alone(tmp_path, cli, sd_pipeline_dir):
    from ddkit.models import ModelSpec, build_model
    from ddkit.models.checkpoint import save_weights

    tree = val_tree(tmp_path / "imagenet", WNIDS)
    (tmp_path / "classes.yaml").write_text(yaml.safe_dump({"wnids": WNIDS}))
    teacher = build_model(ModelSpec("torchvision:resnet18"), 3, (3, 24, 24), (0.5,) * 3, (0.25,) * 3, seed=1)
    save_weights(teacher.body, tmp_path / "resnet18.safetensors")
    soft = yaml.safe_load(eval_preset_path("imagenet-soft").read_text())
    soft["train"].update({"epochs": 1, "batch_size": 4})
    soft["seeds"] = [0]
    (tmp_path / "soft-tiny.yaml").write_text(yaml.safe_dump(soft))
    out = tmp_path / "run"
    cli.ok("run", "prism-dfkd-imagenet", "--data-root", str(tree), "--out", str(out), "--cache", str(tmp_path / "cache"),
           f"--dataset.classes={tmp_path / 'classes.yaml'}", "--dataset.image_size=24", "--ipcs=[2]",
           f"--method_options.prism-dfkd.prior={sd_pipeline_dir}", "--method_options.prism-dfkd.sampler.steps=2",
           "--method_options.prism-dfkd.prompts.per_class=3",
           f"--teacher_weights={json.dumps({'tv-resnet18': str(tmp_path / 'resnet18.safetensors')})}",
           f"--eval_presets=[{tmp_path / 'soft-tiny.yaml'}]")
    assert not (tree / "train").exists()  # nothing to read: the run never needed a training image
    distilled = DistilledSet.load(out / "sets" / "prism-dfkd-ipc2")
    assert list(distilled.class_names) == sorted(WNIDS) and torch.bincount(distilled.labels).tolist() == [2, 2, 2]
    assert distilled.images.shape == (6, 3, 24, 24)  # SD's 16 px, resized: the preset's resize survived the override
    assert distilled.mean == (0.485, 0.456, 0.406) and distilled.meta["data_free"]
    assert distilled.meta["dataset_facts"]["test_images"] == 6
    tench = distilled.meta["prompts"]["classes"]["n01440764"]
    assert tench["gloss"].startswith("freshwater dace-like game fish") and "tench" in tench["prompts"][0]
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert len(board["rows"]) == 1 and board["rows"][0]["teacher"]
