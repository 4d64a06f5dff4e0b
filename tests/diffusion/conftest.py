"""Tiny randomly initialised diffusers models (8–16 px), built in the test session."""

from __future__ import annotations

import pytest
import torch

from ddkit.diffusion.prior import Prior


def tiny_unet(classes: int = 10, size: int = 8, channels: int = 1):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
                       up_block_types=("UpBlock2D",) * 2, num_class_embeds=classes + 1)


@pytest.fixture()
def unet_prior() -> Prior:
    from diffusers import DDPMScheduler

    return Prior(tiny_unet().eval().requires_grad_(False), DDPMScheduler(num_train_timesteps=100), null_class=10)


@pytest.fixture()
def dit_pipeline_dir(tmp_path):
    """A DiT + AutoencoderKL pipeline (the ImageNet prior's shape, tiny) saved as a user would have it."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTPipeline, DiTTransformer2DModel

    torch.manual_seed(0)
    transformer = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                        num_layers=2, sample_size=8, patch_size=2, num_embeds_ada_norm=10, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=16)
    DiTPipeline(transformer=transformer, vae=vae, scheduler=DDIMScheduler(num_train_timesteps=100)).save_pretrained(tmp_path / "dit")
    return tmp_path / "dit"
