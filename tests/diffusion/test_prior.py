from pathlib import Path

import pytest
import torch

from ddkit.curves import read_rows
from ddkit.diffusion.prior import Condition, load_prior
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.diffusion.train import prior_recipe, resolve_prior, save_prior_dir
from ddkit.errors import DDKitError
from ddkit.methods import SynthesisContext, synthesize


def test_a_saved_dit_pipeline_with_vae_loads_and_samples_images(dit_pipeline_dir):
    prior = load_prior(dit_pipeline_dir)
    assert prior.vae is not None and prior.num_classes == 10 and prior.null_class == 10
    assert (prior.sample_size, prior.sample_channels, prior.image_size) == (8, 4, 16)
    latents = sample(prior, Condition(labels=torch.tensor([1, 2])), torch.Generator().manual_seed(0), SamplerConfig(steps=3))
    images = prior.decode(latents, (1, 28, 28))
    assert images.shape == (2, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    encoded = prior.encode(torch.rand(3, 1, 28, 28))
    assert encoded.shape == (3, 4, 8, 8)


def test_a_bare_model_directory_loads_with_the_scheduler_beside_it(dit_pipeline_dir):
    prior = load_prior(dit_pipeline_dir / "transformer")
    assert type(prior.scheduler).__name__ == "DDIMScheduler" and prior.vae is None


def test_ddkit_prior_directory_round_trips(unet_prior, tmp_path):
    save_prior_dir(unet_prior, tmp_path / "p", {"null_class": 10, "class_names": list("abcdefghij")})
    loaded = load_prior(tmp_path / "p")
    x = torch.randn(2, 1, 8, 8)
    cond = Condition(labels=torch.tensor([0, 1]))
    assert torch.allclose(loaded.model_output(x, 5, cond, 2.0), unet_prior.model_output(x, 5, cond, 2.0))
    assert loaded.meta["class_names"][0] == "a"


def test_unloadable_sources_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DDKitError, match="cannot load a diffusion prior from .*empty"):
        load_prior(tmp_path / "empty")


def test_mismatched_priors_are_clear_errors(tiny, tiny_teacher_loader, dit_pipeline_dir, unet_prior, tmp_path):
    ctx = SynthesisContext(tiny, 1, 0, tiny_teacher_loader)
    with pytest.raises(DDKitError, match="makes 16-px images, the dataset has 28-px ones; .* set resize=true"):
        synthesize("diffusion", {"prior": str(dit_pipeline_dir)}, ctx)
    from diffusers import DDPMScheduler

    from ddkit.diffusion.prior import Prior
    from tests.diffusion.conftest import tiny_unet

    five = Prior(tiny_unet(classes=5, size=28), DDPMScheduler(num_train_timesteps=100), null_class=5)
    save_prior_dir(five, tmp_path / "five", {"null_class": 5})
    with pytest.raises(DDKitError, match="knows 5 classes, the dataset has 10; set class_map"):
        synthesize("diffusion", {"prior": str(tmp_path / "five")}, ctx)
    with pytest.raises(DDKitError, match="feature layer 'nope' is not in UNet2DModel; choose one of"):
        synthesize("dap", {"prior": str(tmp_path / "five"), "class_map": [0, 1, 2, 3, 4] * 2, "feature_layer": "nope",
                           "sampler": {"steps": 2}}, ctx)


def test_latent_dit_prior_runs_the_method_path_with_resize(tiny, tiny_teacher_loader, dit_pipeline_dir):
    options = {"prior": str(dit_pipeline_dir), "resize": True, "sampler": {"steps": 2}, "real_per_class": 8,
               "kernel_real": 2, "project": True, "neighbours": 6, "neighbours_final": 4, "tangent_dims": 2}
    result = synthesize("dap", options, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    assert result.images.shape == (20, 1, 28, 28) and torch.isfinite(result.images).all()


def test_squeezed_prior_is_cached_and_reused(tiny, tiny_teacher_loader, tmp_path):
    first = resolve_prior("test-unet", tiny, tiny_teacher_loader, tmp_path)
    assert 0 <= first.meta["metrics"]["teacher_agreement"] <= 100
    assert first.meta["data"] == tiny.fingerprint and not list(tmp_path.rglob("*.partial"))
    curve = read_rows(Path(first.meta["source"]) / "curves" / "train.csv")
    assert [row["step"] for row in curve] == [1, 2, 3, 4, 5]  # 300 images in batches of 64, one row a step
    again = resolve_prior("test-unet", tiny, tiny_teacher_loader, tmp_path)
    assert again.meta["source"] == first.meta["source"]
    for a, b in zip(first.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)


def test_prior_recipes_are_checked():
    with pytest.raises(DDKitError, match="unknown prior recipe 'big'; choose one of: "
                                         "fashion-mnist-text-unet, fashion-mnist-unet, test-text-unet, test-unet"):
        prior_recipe("big")
    with pytest.raises(DDKitError, match="multiples of norm_groups"):
        prior_recipe("test-unet", {"channels": [10, 20]})


def test_modes_need_enough_real_images(tiny, tiny_teacher_loader):
    with pytest.raises(DDKitError, match="5 modes asked of class 'T-shirt/top' with only 4 real images"):
        synthesize("mgd3", {"prior": "test-unet", "real_per_class": 4, "sampler": {"steps": 2}},
                   SynthesisContext(tiny, 5, 0, tiny_teacher_loader))


def test_guided_sets_resume_from_finished_items(tiny, tiny_teacher_loader, tmp_path):
    options = {"prior": "test-unet", "sampler": {"steps": 2}, "batch": 1}
    first = synthesize("mgd3", options | {"real_per_class": 6}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader, workdir=tmp_path))
    assert len(list(tmp_path.glob("*.safetensors"))) == 20
    marker = next(iter(sorted(tmp_path.glob("*.safetensors"))))
    from ddkit.runs import atomic_write_tensors, read_tensors

    tensors, meta = read_tensors(marker)
    atomic_write_tensors(marker, {"images": torch.zeros_like(tensors["images"])}, meta)
    resumed = synthesize("mgd3", options | {"real_per_class": 6}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader, workdir=tmp_path))
    assert (resumed.images == 0).all(dim=(1, 2, 3)).sum() == 1  # the doctored item was reused, the rest match
    assert torch.equal(resumed.images[1:], first.images[1:])
