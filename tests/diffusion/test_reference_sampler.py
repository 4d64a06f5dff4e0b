"""The sampler and guidance choices of the reference code (DiT's gaussian_diffusion.py as MGD3 and
ManifoldGD use it): learned variance, unclipped latents, step noise on its own generator."""

import math

import pytest
import torch

from ddkit.curves import CurveLog, read_rows
from ddkit.diffusion.guidance import ModeGuidance
from ddkit.diffusion.manifold import ManifoldPull, TangentProjection, warm_radius
from ddkit.diffusion.prior import Condition, load_prior
from ddkit.diffusion.sampler import GuidanceTerm, SamplerConfig, make_scheduler, sample, step_std

DDPM = SamplerConfig(scheduler="ddpm", steps=6, cfg_scale=4.0)


def test_dit_keeps_its_learned_variance_and_latents_are_not_clipped(dit_pipeline_dir):
    prior = load_prior(dit_pipeline_dir)
    assert prior.learned_variance
    ddpm = make_scheduler(prior, DDPM)
    assert ddpm.config.variance_type == "learned_range" and ddpm.config.clip_sample is False
    assert make_scheduler(prior, SamplerConfig()).config.clip_sample is False
    output = prior.model_output(torch.randn(2, 4, 8, 8), 50, Condition(labels=torch.tensor([1, 2])), 4.0)
    assert output.shape[1] == 8  # ε and the variance channels reach the scheduler
    t = int(ddpm.timesteps[1])
    learned, fixed = step_std(ddpm, t, output, 4), step_std(ddpm, t, output[:, :4], 4)
    assert learned > 0 and fixed > 0 and abs(learned - fixed) > 1e-6  # the model's variance, not the fixed one
    out = sample(prior, Condition(labels=torch.tensor([1, 2])), torch.Generator().manual_seed(0), DDPM)
    assert out.shape == (2, 4, 8, 8) and torch.isfinite(out).all()


class RandomDraws(GuidanceTerm):
    """A term that only consumes the item's generator (as kernel references and clouds do)."""

    def direction(self, state):
        torch.randn(100, generator=state.generator)
        return torch.zeros_like(state.x)


def test_guidance_draws_do_not_shift_the_ddpm_step_noise(unet_prior):
    cond = Condition(labels=torch.full((3,), 2))
    plain = sample(unet_prior, cond, torch.Generator().manual_seed(4), DDPM)
    drawing = sample(unet_prior, cond, torch.Generator().manual_seed(4), DDPM, [RandomDraws(1.0)])
    assert torch.equal(plain, drawing)


def test_mode_step_uses_the_ddpm_std_when_asked(unet_prior):
    from tests.diffusion.test_guidance import _state

    x = torch.randn(2, 1, 8, 8)
    state = _state(unet_prior, x)
    modes = torch.zeros(2, 1, 8, 8)
    noise_step = ModeGuidance(modes, 1.0).direction(state)
    ddpm_step = ModeGuidance(modes, 1.0, step="ddpm-std").direction(state)
    assert torch.allclose(ddpm_step * state.sigma, noise_step * state.step_std, atol=1e-6)


def test_manifold_pull_moves_toward_the_cloud_plane_and_projection_reports_norms(unet_prior, tmp_path):
    centres = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = Condition(labels=torch.full((2,), 3))
    pull = ManifoldPull(centres, scale=0.5, window=(0, 1), points=40, neighbours=12, dims=3, radius=0.5, warm_steps=2)
    projected = TangentProjection(ModeGuidance(centres, 0.5, (0, 1)), [centres[0:1].repeat(20, 1, 1, 1) + 0.1 * torch.randn(20, 1, 8, 8)] * 2,
                                  dims=3, neighbours=12, neighbours_final=8)
    sample(unet_prior, cond, torch.Generator().manual_seed(0), SamplerConfig(steps=4), [pull, projected],
           curves=CurveLog(tmp_path, "item"))
    rows = read_rows(tmp_path / "item.csv")
    assert all(r["ManifoldPull"] > 0 for r in rows)
    assert [r["ManifoldPull:radius"] for r in rows] == pytest.approx([1.0, 0.5 * (1 + (math.exp(0.5) - 1) / (math.e - 1)), 0.5, 0.5], abs=1e-5)
    raw, kept = [r["ModeGuidance+projection:raw_norm"] for r in rows], [r["ModeGuidance+projection:projected_norm"] for r in rows]
    assert all(0 < k <= r + 1e-6 for r, k in zip(raw, kept))  # a projection never lengthens the step


def test_dit_cfg_on_three_channels_keeps_the_fourth_conditional(dit_pipeline_dir):
    prior = load_prior(dit_pipeline_dir)
    x, cond = torch.randn(2, 4, 8, 8), Condition(labels=torch.tensor([1, 2]))
    conditional = prior.model_output(x, 50, cond)
    everywhere, three = prior.model_output(x, 50, cond, 4.0), prior.model_output(x, 50, cond, 4.0, cfg_channels=3)
    assert torch.equal(three[:, :3], everywhere[:, :3]) and not torch.allclose(everywhere[:, 3], conditional[:, 3])
    assert torch.allclose(three[:, 3:], conditional[:, 3:], atol=1e-5)  # the 4th ε channel and the variance: conditional only


def test_cloud_radius_warms_down_from_twice_r_as_released():
    assert warm_radius(0.05, 0, 5, 2.0, "exp") == 0.1
    assert math.isclose(warm_radius(0.05, 1, 5, 2.0, "exp"), 0.05 * (1 + (math.exp(0.8) - 1) / (math.e - 1)))
    assert math.isclose(warm_radius(0.05, 2, 5, 2.0, "linear"), 0.05 * 1.6)
    assert warm_radius(0.05, 5, 5, 2.0, "cosine") == 0.05 == warm_radius(0.05, 0, 5, 1.0, "exp")
