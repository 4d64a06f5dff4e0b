"""Guidance terms: mode guidance (MGD3) and kernel representativeness guidance (DAP).

MGD3: Chan-Santiago et al., "MGD³: Mode-Guided Dataset Distillation using Diffusion Models",
ICML 2025. DAP: "Diffusion As Prior: representativeness-guided dataset distillation", ICLR 2026
(no public code; this is our implementation of the paper's update).

| paper                                        | here                                             |
|----------------------------------------------|--------------------------------------------------|
| m_j, mode of IPC index j                     | `ModeGuidance.modes[j]`                          |
| λ σ_t (m_j − x̂₀)                             | `scale` × `direction`; σ_t = √(1−ᾱ_t), or the DDPM step's std (`step="ddpm-std"`, released code) |
| φ(x_t, t), intermediate layer of the network | `layer_features(prior, layer, ...)`              |
| x_n, real class samples noised to t          | `KernelGuidance.real`, `per_step` drawn per step |
| γ ∇_{x_t} (1/N) Σ_n ‖φ(x_t,t) − φ(x_n,t)‖     | `scale` × `direction` (minus the gradient)       |
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from ddkit.diffusion.features import kernel_distance, layer_features
from ddkit.diffusion.prior import Condition
from ddkit.diffusion.sampler import GuidanceTerm, StepState


class ModeGuidance(GuidanceTerm):
    """Pull sample j's clean prediction toward its mode: s_t (m_j − x̂₀), s_t the noise level σ_t or
    the DDPM step's standard deviation (MGD3's released code: λ·exp(½ log-variance)·(m − x̂₀))."""

    def __init__(
        self, modes: torch.Tensor, scale: float = 0.1, window: Sequence[float] = (0.0, 0.5),
        step: Literal["noise", "ddpm-std"] = "noise",
    ) -> None:
        super().__init__(scale, window)
        self.modes, self.step = modes, step

    def direction(self, state: StepState) -> torch.Tensor:
        size = state.step_std if self.step == "ddpm-std" else state.sigma
        return size * (self.modes.to(state.x0) - state.x0)


def rms_normalise(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """Rescale each sample's gradient to per-element RMS σ_t: the step then has the size of the
    noise still in x_t whatever the layer or model, so one γ transfers between priors."""
    rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
    return sigma * grad / rms.view(-1, *[1] * (grad.ndim - 1))


class KernelGuidance(GuidanceTerm):
    """DAP: descend the mean kernel distance between φ(x_t, t) and φ(x_n, t) of real class samples.

    `real` is one pool of real samples shared by the batch (the paper), or one pool per sample
    (each IPC index its own cluster of the class), so that the samples are not all pulled toward
    the same references."""

    def __init__(
        self, layer: nn.Module, real: torch.Tensor | Sequence[torch.Tensor], scale: float = 1.0, window: Sequence[float] = (0.0, 1.0),
        kernel: Literal["linear", "rbf"] = "linear", per_step: int = 16, normalise: Literal["rms", "none"] = "rms",
    ) -> None:
        super().__init__(scale, window)
        self.layer, self.real, self.kernel, self.per_step, self.normalise = layer, real, kernel, per_step, normalise

    def reference(self, state: StepState) -> torch.Tensor:
        """φ of `per_step` noised real samples: (N, D) from the shared pool, or (B, N, D) from each
        sample's own pool (drawn with replacement, as a cluster may hold fewer than N)."""
        if isinstance(self.real, torch.Tensor):
            picks = self.real[torch.randperm(len(self.real), generator=state.generator)[: self.per_step]]
        else:
            picks = torch.cat([pool[torch.randint(len(pool), (self.per_step,), generator=state.generator)] for pool in self.real])
        noisy = state.prior.add_noise(picks.to(state.x), state.t, state.generator)
        with torch.no_grad():
            features = layer_features(state.prior, self.layer, noisy, state.t, first_condition(state.cond, len(noisy)))
        return features if isinstance(self.real, torch.Tensor) else features.view(len(self.real), self.per_step, -1)

    def loss(self, state: StepState, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        features = layer_features(state.prior, self.layer, x, state.t, state.cond)
        return kernel_distance(features, reference, self.kernel).mean(1).sum()

    def direction(self, state: StepState) -> torch.Tensor:
        reference = self.reference(state)
        with torch.enable_grad():
            x = state.x.detach().requires_grad_(True)
            grad = torch.autograd.grad(self.loss(state, x, reference), x)[0]
        return -rms_normalise(grad, state.sigma) if self.normalise == "rms" else -grad


def first_condition(cond: Condition, count: int) -> Condition:
    """The condition of the batch's first row, repeated: real references share the batch's class."""
    if cond.text is not None:
        return Condition(text=cond.text[:1].expand(count, -1, -1), null_text=cond.null_text)
    return Condition(labels=cond.labels[:1].expand(count) if cond.labels is not None else None)
