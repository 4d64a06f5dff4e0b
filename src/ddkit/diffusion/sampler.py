"""One guided sampler: a loop over a diffusers scheduler with CFG and composable guidance terms.

Each step: the prior predicts ε (classifier-free guided), the scheduler proposes x̃_{t−1}, and
every guidance term active at this step adds `scale · direction(state)`:

    x_{t−1} = x̃_{t−1} + Σ_g  s_g · d_g(x_t, t, x̂₀, condition)

A term is a small object with one contract (`GuidanceTerm.direction`); terms may wrap other
terms (the manifold projection does), so method variants are configuration, not new samplers.
Sampling has no loss: its curve is, per step, the mean per-sample L2 norm of each active term's
contribution s_g · d_g, plus whatever a term reports about itself (`GuidanceTerm.diagnostics`).

Choices that follow the reference samplers (DiT's `gaussian_diffusion.py`, as the MGD3 and
ManifoldGD code use it): DDPM keeps a learned-variance model's own variance (DiT's
`learned_range`) rather than a fixed one; latent priors never clip x̂₀ to [−1, 1] (latents are not
bounded; the reference samples with `clip_denoised=False`), whatever the scheduler config says;
and the DDPM step noise comes from its own generator, seeded from the item's, so the random draws
of guidance terms (kernel references, manifold clouds) never shift the step noise: every method
sees the same noise sequence for the same item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Optional, Sequence

import torch

from ddkit.config import ADDED_OPTION
from ddkit.curves import CurveLog
from ddkit.diffusion.prior import Condition, Prior
from ddkit.errors import DDKitError
from ddkit.extras import require
from ddkit.seeds import item_seed


@dataclass(frozen=True)
class SamplerConfig:
    scheduler: Literal["ddim", "ddpm"] = "ddim"  # the sampling scheduler, built from the prior's noise schedule
    steps: int = 50  # denoising steps
    cfg_scale: float = 2.0  # classifier-free guidance scale; 1: none
    cfg_channels: int = field(default=0, metadata=ADDED_OPTION)  # guide only the first N channels of ε (DiT's released sampler: 3 of 4); 0: all
    eta: float = 0.0  # DDIM stochasticity (0: deterministic given the initial noise)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be 0 or more (1: no guidance), got {self.cfg_scale}")
        if self.cfg_channels < 0:
            raise ValueError(f"cfg_channels must be 0 (all) or more, got {self.cfg_channels}")
        if not 0 <= self.eta <= 1:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta}")


@dataclass
class StepState:
    """What a guidance term sees at one step (x is x_t; x0 the prior's clean prediction)."""

    prior: Prior
    x: torch.Tensor
    t: int
    step: int
    steps: int
    x0: torch.Tensor
    eps: torch.Tensor
    alpha: float  # √ᾱ_t
    sigma: float  # √(1−ᾱ_t)
    step_std: float  # the standard deviation of the DDPM step t → t−1 (learned for DiT; fixed posterior std otherwise)
    cond: Condition
    generator: torch.Generator


class GuidanceTerm:
    """A direction added to x_{t−1}, scaled by `scale`, on the steps inside `window`.

    `window` holds fractions of the sampling steps: (0, 0.5) is the first half.
    """

    def __init__(self, scale: float, window: Sequence[float] = (0.0, 1.0)) -> None:
        self.scale, self.window = float(scale), (float(window[0]), float(window[1]))

    def active(self, step: int, steps: int) -> bool:
        return self.window[0] * steps <= step < self.window[1] * steps

    def progress(self, step: int, steps: int) -> float:
        """How far through its window the term is, 0 → 1 (for annealed schedules)."""
        first, last = self.window[0] * steps, self.window[1] * steps - 1
        return 0.0 if last <= first else min(1.0, max(0.0, (step - first) / (last - first)))

    @property
    def name(self) -> str:
        """The term's column in the sampling curve."""
        return type(self).__name__

    def direction(self, state: StepState) -> torch.Tensor:
        raise NotImplementedError

    def diagnostics(self) -> dict[str, float]:
        """Extra numbers about the last `direction` call, logged as `<name>:<key>` curve columns."""
        return {}


def make_scheduler(prior: Prior, config: SamplerConfig):
    diffusers = require("diffusers", "diffusion sampling")
    latent = {"clip_sample": False} if prior.vae is not None else {}
    if config.scheduler == "ddim":
        scheduler = diffusers.DDIMScheduler.from_config(prior.scheduler.config, **latent)
    else:
        variance = "learned_range" if prior.learned_variance else "fixed_small"
        scheduler = diffusers.DDPMScheduler.from_config(prior.scheduler.config, variance_type=variance, **latent)
    scheduler.set_timesteps(config.steps)
    return scheduler


def step_std(scheduler, t: int, output: torch.Tensor, channels: int) -> float:
    """Standard deviation of the DDPM step from t (mean over the batch for a learned variance).
    DDIM steps use the DDPM posterior's, so step-scaled guidance keeps its size at eta = 0."""
    prev = t - scheduler.config.num_train_timesteps // len(scheduler.timesteps)
    alpha_bar, alpha_bar_prev = float(scheduler.alphas_cumprod[t]), float(scheduler.alphas_cumprod[prev]) if prev >= 0 else 1.0
    beta = 1 - alpha_bar / alpha_bar_prev
    posterior = (1 - alpha_bar_prev) / (1 - alpha_bar) * beta
    if getattr(scheduler.config, "variance_type", "") == "learned_range" and output.shape[1] == 2 * channels:
        fraction = (output[:, channels:].float().mean() + 1) / 2  # DiT interpolates log-variance between β̃_t and β_t
        log_variance = fraction * math.log(max(beta, 1e-20)) + (1 - fraction) * math.log(max(posterior, 1e-20))
        return float(torch.exp(0.5 * log_variance))
    return posterior ** 0.5


def sample(
    prior: Prior, cond: Condition, generator: torch.Generator, config: SamplerConfig = SamplerConfig(),
    terms: Sequence[GuidanceTerm] = (), noise: Optional[torch.Tensor] = None, curves: Optional[CurveLog] = None,
    start: Optional[torch.Tensor] = None, strength: float = 1.0,
) -> torch.Tensor:
    """Samples (in the prior's sample space) for each row of `cond`; all randomness from `generator`.
    Each guided step logs the size of every active term's contribution to `curves` (step = steps done).

    With `start` (clean samples in the prior's space), SDEdit: each start is noised to the level of the
    schedule's step at 1 − `strength` and only the last `strength` share of the steps runs; guidance
    windows are then fractions of the steps that run, so a term guides however much of the path is left."""
    scheduler = make_scheduler(prior, config)
    shape = (len(cond), prior.sample_channels, prior.sample_size, prior.sample_size)
    if noise is None:
        noise = torch.randn(shape, generator=generator)
    step_noise = torch.Generator().manual_seed(item_seed(generator.initial_seed(), "step-noise"))
    x = noise.to(prior.device) * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    if start is not None:
        timesteps = timesteps[len(timesteps) - max(1, round(strength * len(timesteps))):]
        x = scheduler.add_noise(start.to(prior.device), noise.to(prior.device), timesteps[:1])
    steps = len(timesteps)
    extra = {"eta": config.eta} if config.scheduler == "ddim" else {}
    named = list(zip(unique_names([term.name for term in terms]), terms))
    curves = curves or CurveLog()
    for step, t in enumerate(timesteps):
        t = int(t)
        with torch.no_grad():
            output = prior.model_output(scheduler.scale_model_input(x, t), t, cond, config.cfg_scale, config.cfg_channels)
        if config.scheduler == "ddim" or not prior.learned_variance:
            output = output[:, : prior.sample_channels]
        x_prev = scheduler.step(output, t, x, generator=step_noise, **extra).prev_sample
        active = [(name, term) for name, term in named if term.active(step, steps)]
        if active:
            eps, x0 = prior.predict_eps_x0(x, output[:, : prior.sample_channels], t)
            alpha, sigma = prior.schedule_at(t)
            std = step_std(scheduler, t, output, prior.sample_channels)
            state = StepState(prior, x, t, step, steps, x0, eps, alpha, sigma, std, cond, generator)
            sizes = {}
            for name, term in active:
                delta = term.scale * term.direction(state)
                if not torch.isfinite(delta).all():
                    raise DDKitError(f"{type(term).__name__} guidance became NaN/inf at step {step + 1} of {steps}; "
                                     f"lower its scale (now {term.scale})")
                x_prev = x_prev + delta
                sizes[name] = delta.detach().flatten(1).norm(dim=1).mean()
                sizes.update({f"{name}:{key}": value for key, value in term.diagnostics().items()})
            curves.log(step + 1, **sizes)
        x = x_prev
    curves.close()
    return x


def unique_names(names: list[str]) -> list[str]:
    """The names, the second and later of a repeated one numbered (ModeGuidance, ModeGuidance-2)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out
