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
