"""EDA — energy-guided distribution alignment (PRISM-DFKD, He et al. 2025, arXiv 2509.16897).

A classifier's free energy E(x) = −T·logsumexp(f(x)/T) is low where it has seen data (Liu et
al. 2020), so descending it moves samples toward the teacher's training distribution
(precision). The term evaluates the teacher on the prior's clean prediction x̂₀, decoded to
images (through the VAE for latent priors); the energy's gradient with respect to x̂₀, RMS-
normalised to the noise level σ_t like DAP's, is the direction. Taking the gradient at x̂₀
rather than through the denoiser at x_t is our choice (the paper does not say): it costs one
teacher backward pass per step instead of a backward pass through the UNet.

Plain energy does not favour the prompted class, so two class-aware objectives are offered:
`logit` (−f_y) and `energy+ce` (E + cross-entropy to y). After sampling, an optional filter drops
each class's highest-energy samples (`keep_lowest_energy`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.diffusion.guidance import rms_normalise
from ddkit.diffusion.sampler import GuidanceTerm, StepState
from ddkit.errors import DDKitError

Objective = Literal["energy", "logit", "energy+ce"]


def free_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """E = −T·logsumexp(f/T) per row."""
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


def energy_objective(logits: torch.Tensor, labels: torch.Tensor, objective: Objective, temperature: float) -> torch.Tensor:
    """Per-sample quantity EDA descends."""
    if objective == "energy":
        return free_energy(logits, temperature)
    if objective == "logit":
        return -logits.gather(1, labels.view(-1, 1)).squeeze(1)
    return free_energy(logits, temperature) + F.cross_entropy(logits, labels, reduction="none")


class EnergyGuidance(GuidanceTerm):
    """Descend the teacher's energy (or a class-aware variant) of the decoded x̂₀."""

    def __init__(
        self, classifier: nn.Module, labels: torch.Tensor, image_shape: tuple[int, int, int], scale: float = 0.1,
        window: Sequence[float] = (0.0, 1.0), temperature: float = 1.0, objective: Objective = "energy",
    ) -> None:
        super().__init__(scale, window)
        self.classifier, self.labels, self.image_shape = classifier, labels, image_shape
        self.temperature, self.objective = temperature, objective

    def direction(self, state: StepState) -> torch.Tensor:
        with torch.enable_grad():
            x0 = state.x0.detach().requires_grad_(True)
            logits = self.classifier(state.prior.images(x0, self.image_shape))
            value = energy_objective(logits, self.labels.to(logits.device), self.objective, self.temperature).sum()
            grad = torch.autograd.grad(value, x0)[0]
        return -rms_normalise(grad, state.sigma)


@dataclass(frozen=True)
class FilterReport:
    generated: int
    kept: int
    threshold: float  # highest energy kept

    @property
    def rejection_rate(self) -> float:
        return 1 - self.kept / self.generated


def keep_lowest_energy(energies: torch.Tensor, keep: int, max_energy: float | None, what: str) -> tuple[torch.Tensor, FilterReport]:
    """Indices of the `keep` lowest-energy samples of one class (and at most `max_energy`)."""
    order = torch.argsort(energies, stable=True)[:keep]
    if max_energy is not None:
        order = order[energies[order] <= max_energy]
    if len(order) == 0:
        raise DDKitError(f"the energy filter rejects every sample of {what} (lowest energy {energies.min().item():.3f} > "
                         f"max_energy {max_energy}); raise max_energy or turn the filter off")
    if len(order) < keep:
        raise DDKitError(f"the energy filter keeps only {len(order)} of the {keep} samples needed for {what} "
                         f"(max_energy {max_energy}); raise max_energy or oversample more (lower filter_fraction)")
    return order, FilterReport(len(energies), len(order), round(float(energies[order].max()), 4))
