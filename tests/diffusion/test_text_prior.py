import pytest
import torch

from ddkit.diffusion.prior import load_prior
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.diffusion.text import PromptTruncated
from ddkit.diffusion.train import resolve_prior


def test_a_saved_stable_diffusion_pipeline_loads_with_its_text_encoder_and_samples(sd_pipeline_dir):
    prior = load_prior(sd_pipeline_dir)
    assert prior.text_encoder is not None and prior.vae is not None and prior.num_classes is None
    cond = prior.prompt_condition(["a photo of a crane", "a sketch of a boot"])
    assert cond.text.shape == (2, 16, 16) and cond.null_text.shape == (1, 16, 16)
    assert not torch.equal(cond.text[0], cond.text[1])
    latents = sample(prior, cond, torch.Generator().manual_seed(0), SamplerConfig(steps=2))
    assert prior.decode(latents, (3, 16, 16)).shape == (2, 3, 16, 16)


def test_prompts_longer_than_the_encoder_takes_are_truncated_with_a_warning(sd_pipeline_dir):
    prior = load_prior(sd_pipeline_dir)
    with pytest.warns(PromptTruncated, match="takes 16: truncated"):
        states = prior.text_encoder.encode(["a very long prompt about many different things"])
    assert states.shape[1] == 16


def test_the_embedded_text_prior_squeezes_with_minilm_captions_and_is_cached(tiny, tiny_teacher_loader, tmp_path):
    prior = resolve_prior("test-text-unet", tiny, tiny_teacher_loader, tmp_path)
    assert prior.meta["text_encoder"] == "all-MiniLM-L6-v2" and prior.text_encoder.dim == 384
    assert prior.meta["class_prompts"][9] == "a photo of an ankle boot"
    again = resolve_prior("test-text-unet", tiny, tiny_teacher_loader, tmp_path)
    assert type(again.model).__name__ == "UNet2DConditionModel" and again.meta["source"] == prior.meta["source"]
    cond = again.prompt_condition(["a photo of a dark bag", "a photo of a bright bag"])
    x = torch.randn(2, 1, 28, 28)
    out = again.model_output(x, 500, cond, cfg_scale=2.0)
    assert not torch.allclose(out[0], out[1])  # the prompt reaches the denoiser
