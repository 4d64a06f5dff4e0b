from dataclasses import replace

import pytest
import torch

from ddkit.diffusion.train import PriorPool
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize

SMALL = {"prior": "test-text-unet", "sampler": {"steps": 2}, "prompts": {"per_class": 3, "vocabulary": "fashion-mnist"}}


def test_prism_dfkd_samples_a_filtered_prompted_set_without_training_images(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, 2, 0, tiny_teacher_loader, workdir=tmp_path / "w", prior=PriorPool(tiny, tiny_teacher_loader, tmp_path / "cache"))
    result = synthesize("prism-dfkd", SMALL | {"filter_fraction": 0.5}, ctx)
    assert result.images.shape == (20, 1, 28, 28) and torch.bincount(result.labels).tolist() == [2] * 10
    report = result.meta["energy_filter"]["Bag"]
    assert report == {"generated": 4, "kept": 2, "rejection_rate": 0.5, "max_kept_energy": report["max_kept_energy"]}
    prompts = result.meta["prompts"]
    assert len(prompts["per_image"]) == 20 and prompts["classes"]["Sneaker"]["gloss"].startswith("a canvas shoe")
    assert len(list((tmp_path / "w").glob("*.safetensors"))) == 10  # 4 per class in batches of 10: one item each
    again = synthesize("prism-dfkd", SMALL | {"filter_fraction": 0.5}, replace(ctx, workdir=tmp_path / "fresh"))
    assert torch.equal(again.images, result.images)


def test_text_diffusion_is_the_bare_prompt_baseline(tiny, tiny_teacher_loader, tmp_path):
    ctx = SynthesisContext(tiny, 1, 0, tiny_teacher_loader, prior=PriorPool(tiny, tiny_teacher_loader, tmp_path))
    result = synthesize("text-diffusion", {"prior": "test-text-unet", "sampler": {"steps": 2}}, ctx)
    assert result.meta["prompts"]["per_image"][9] == "a photo of an ankle boot"
    assert all(r["rejection_rate"] == 0 for r in result.meta["energy_filter"].values())


def test_a_teacher_with_other_classes_or_a_class_prior_are_refused(tiny, tiny_teacher_loader, tmp_path):
    def five_class_teacher(name):
        teacher = tiny_teacher_loader(name)
        return replace(teacher, model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 5)))

    with pytest.raises(DDKitError, match="predicts 5 classes but the prompts cover 10"):
        synthesize("prism-dfkd", SMALL, SynthesisContext(tiny, 1, 0, five_class_teacher, prior=PriorPool(tiny, five_class_teacher, tmp_path)))
    with pytest.raises(DDKitError, match="not text-conditioned"):
        context = SynthesisContext(tiny, 1, 0, tiny_teacher_loader, prior=PriorPool(tiny, tiny_teacher_loader, tmp_path))
        synthesize("prism-dfkd", SMALL | {"prior": "test-unet"}, context)
