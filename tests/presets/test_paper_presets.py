"""Every paper preset end to end through `ddkit run`, on a generated ImageNet-shaped tree (WordNet-id
class folders, train/ and val/) with tiny random models of the real families saved to disk and
loaded by the real code: torchvision classifiers from weight files, a diffusers DiT + VAE
pipeline directory. Overrides only shrink sizes and step counts; the protocol presets themselves
are loaded and checked, the students train under a one-epoch copy of them (a preset file)."""

import json

import pytest
import torch
import yaml
from PIL import Image

from ddkit.data import DistilledSet
from ddkit.data.class_lists import imagenet_indices, load_class_list
from ddkit.evaluate import load_eval_preset
from ddkit.evaluate.presets import eval_preset_path
from ddkit.pipeline import load_run_config
from ddkit.presets import preset_names

NETTE = load_class_list("imagenette").wnids


def make_tree(root, wnids, size, train=3, val=1):
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", train), ("val", val)):
        for c, wnid in enumerate(wnids):
            (root / split / wnid).mkdir(parents=True)
            for i in range(count):
                pixels = (torch.rand(size, size, 3, generator=generator) * 80 + c * 17).clamp(0, 255).byte().numpy()
                Image.fromarray(pixels).save(root / split / wnid / f"{wnid}_{i}.JPEG")
    return root


def quick_copy(name, tmp_path, **train):
    """The shipped protocol with one epoch and one seed: the same labels, loss, teacher and mixing."""
    data = yaml.safe_load(eval_preset_path(name).read_text())
    data["train"].update({"epochs": 1, "epochs_by_ipc": {}, **train})
    data["seeds"] = [0]
    path = tmp_path / f"{name}-tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_every_paper_preset_loads_with_its_protocol():
    for name in preset_names("runs"):
        config = load_run_config(name)
        for preset in config.eval_presets:
            load_eval_preset(preset, config.eval_teacher)


@pytest.mark.e2e
@pytest.mark.parametrize("preset", ["prism-imagenet", "sre2l-imagenet"])
def test_inversion_paper_preset_runs_end_to_end(preset, tmp_path, cli):
    from ddkit.models import ModelSpec, build_model
    from ddkit.models.checkpoint import save_weights

    tree = make_tree(tmp_path / "imagenet", NETTE[:4], 72)
    weights = {}
    for name, arch in {"tv-resnet18": "resnet18", "tv-mobilenet-v2": "mobilenet_v2", "tv-efficientnet-b0": "efficientnet_b0",
                       "tv-shufflenet-v2-x0-5": "shufflenet_v2_x0_5", "tv-alexnet": "alexnet"}.items():
        model = build_model(ModelSpec(f"torchvision:{arch}"), 4, (3, 64, 64), (0.5,) * 3, (0.25,) * 3, seed=1)
        save_weights(model.body, tmp_path / f"{arch}.safetensors")
        weights[name] = str(tmp_path / f"{arch}.safetensors")
    method = preset.split("-")[0]
    protocol = load_run_config(preset).eval_presets[0]
    out = tmp_path / "run"
    cli.ok("run", preset, "--data-root", str(tree), "--out", str(out), "--cache", str(tmp_path / "cache"),
           "--dataset.image_size=64", "--dataset.val_size=4", "--ipcs=[2]",
           f"--method_options.{method}.iterations=3", f"--method_options.{method}.cycle_step=1",
           f"--method_options.{method}.cycle_period=2",
           f"--method_options.{method}.jitter=8", f"--teacher_weights={json.dumps(weights)}",
           f"--eval_presets=[{quick_copy(protocol, tmp_path, batch_size=4)}]")
    items = DistilledSet.load(out / "sets" / f"{method}-ipc2").meta["items"]
    assert len(items) == 2 and [item["iterations"] for item in items] == ([3, 2] if method == "prism" else [3, 3])
    if method == "prism":
        panel = load_run_config(preset).method_options["prism"]["bn_teachers"]
        for item in items:  # the logit teacher always, then a subset of the other panel members, each at most once
            assert item["bn_teachers"][0] == "tv-resnet18"
            assert item["bn_teachers"] == [t for t in panel if t in item["bn_teachers"]]
        assert all(item["real_init"] for item in items)
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert len(board["rows"]) == 1 and board["rows"][0]["teacher"]


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["mgd3", "manifoldgd", "dap"])
def test_diffusion_paper_preset_runs_end_to_end(method, tmp_path, cli):
    from tests.conftest import save_tiny_dit

    save_tiny_dit(tmp_path / "dit", classes=1000, latent_size=4, layers=10)  # blocks up to 8: DAP's feature layer
    tree = make_tree(tmp_path / "imagenette", NETTE, 16, train=4)
    out = tmp_path / "run"
    cli.ok("run", f"{method}-imagenette", "--data-root", str(tree), "--out", str(out), "--cache", str(tmp_path / "cache"),
           "--dataset.image_size=12", "--dataset.val_size=10", "--ipcs=[2]", f"--method_options.{method}.prior={tmp_path / 'dit'}",
           f"--method_options.{method}.sampler.steps=4", f"--method_options.{method}.real_per_class=3",
           "--students=[\"convnet(width=8,depth=2,norm=instance)\", \"resnet-ap(width=4)\"]",
           f"--eval_presets=[{quick_copy('imagenet-hard', tmp_path, batch_size=8)}]")
    config = json.loads((out / "manifest.json").read_text())["config"]
    assert config["method_options"][method]["class_ids"] == "wnid" and config["dataset"]["classes"] == "imagenette"
    assert imagenet_indices(NETTE)[:2] == [0, 217]
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert {row["student"] for row in board["rows"]} == {"convnet(depth=2,norm=instance,width=8)", "resnet-ap(width=4)"}
    assert len(list((out / "sets" / f"{method}-ipc2" / "curves" / "guidance").glob("*.csv"))) == 10
