"""ManifoldGD's tangent-space projection of a guidance direction.

ManifoldGD: "Manifold-Guided Diffusion for dataset distillation", CVPR 2026. At each guided
step the real samples of the mode's cluster are noised forward to t, the K nearest to x_t are
kept, and the top-d principal directions of their covariance span the local tangent space T;
the wrapped term's direction is replaced by its projection onto T, so samples move toward their
mode without leaving the (noisy) data manifold. K is annealed from `neighbours` to
`neighbours_final` across the window (the paper's shrinking neighbourhood radius).

| paper                               | here                                                |
|-------------------------------------|-----------------------------------------------------|
| 𝒩_K(x_t), noised cluster neighbours | `noisy_neighbours`                                  |
| T_{x_t} (top-d principal directions) | `tangent_basis(...)` → U (D × d)                    |
| P_T g = U Uᵀ g                      | `TangentProjection.direction`                       |

`TangentProjection` reports the per-sample norm of the wrapped term's direction before and after
the projection (curve columns `…:raw_norm`, `…:projected_norm`), which shows how much of the
step the projection keeps.

`ManifoldPull` is the term the released code (AyushRoy2001/ManifoldGD, `distribution_aware_
guidance` in diffusion/gaussian_diffusion.py) adds next to mode guidance: ~300 points on spheres
of radius ≤ r around the mode centre, noised to t; the K = 12 nearest to x_t; their top-d (3)
principal directions; the unit vector toward that plane, −(I − UUᵀ)(x_t − μ)/‖·‖, weighted by
tanh(min distance / bandwidth). The cloud's radius starts at `max_mult`·r and shrinks to r over
the first `warm_steps` steps (the released `_adaptive_radius`), then stays r.

An older reading, `variant="released"` of `TangentProjection`,, which differs from the paper:
the projected term plus the unprojected term plus a pull of x_t toward the PCA plane of the
neighbour cloud, −(I − UUᵀ)(x_t − centre) σ_t.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch

from ddkit.diffusion.sampler import GuidanceTerm, StepState


def tangent_basis(points: torch.Tensor, dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, U): the mean of `points` (K, D) and an orthonormal basis (D, d) of their top-d
    principal directions."""
    centre = points.mean(0)
    _, _, vh = torch.linalg.svd(points - centre, full_matrices=False)
    return centre, vh[: min(dims, len(vh))].T


def noisy_neighbours(members: torch.Tensor, x: torch.Tensor, count: int, state: StepState) -> torch.Tensor:
    """The `count` members (M, D), noised to the current t, nearest to x (D,)."""
    noisy = state.prior.add_noise(members.to(x), state.t, state.generator)
    distance = (noisy - x).pow(2).sum(1)
    return noisy[distance.topk(min(count, len(noisy)), largest=False).indices]


class TangentProjection(GuidanceTerm):
    """Wraps another term; keeps its scale and window, projects its direction per sample."""

    def __init__(
        self, inner: GuidanceTerm, members: list[torch.Tensor], dims: int = 8, neighbours: int = 64,
        neighbours_final: int = 16, variant: Literal["paper", "released"] = "paper",
    ) -> None:
        super().__init__(inner.scale, inner.window)
        self.inner, self.members, self.dims, self.variant = inner, members, dims, variant
        self.neighbours, self.neighbours_final = neighbours, neighbours_final
        self._norms: dict[str, float] = {}

    @property
    def name(self) -> str:
        return f"{self.inner.name}+projection"

    def direction(self, state: StepState) -> torch.Tensor:
        raw = self.inner.direction(state)
        fraction = self.progress(state.step, state.steps)
        count = round(self.neighbours + (self.neighbours_final - self.neighbours) * fraction)
        count = max(count, self.dims + 1)
        flat_x, flat_raw = state.x.detach().flatten(1), raw.flatten(1)
        out = []
        for j in range(len(flat_x)):
            near = noisy_neighbours(self.members[j].flatten(1), flat_x[j], count, state)
            centre, basis = tangent_basis(near, self.dims)
            projected = basis @ (basis.T @ flat_raw[j])
            if self.variant == "released":
                offset = flat_x[j] - centre
                projected = projected + flat_raw[j] - state.sigma * (offset - basis @ (basis.T @ offset))
            out.append(projected)
        result = torch.stack(out).view_as(raw)
        self._norms = {"raw_norm": float(flat_raw.norm(dim=1).mean()), "projected_norm": float(result.flatten(1).norm(dim=1).mean())}
        return result

    def diagnostics(self) -> dict[str, float]:
        return self._norms


def warm_radius(radius: float, step: int, warm_steps: int, max_mult: float,
                schedule: Literal["linear", "cosine", "exp"]) -> float:
    """The cloud radius at `step` (0 = the first sampling step): r·(1 + (max_mult − 1)·s(p)),
    p = 1 − step / warm_steps falling from 1 to 0 over the warm-up, s a linear, cosine or
    exponential ramp, (e^p − 1)/(e − 1); r itself from then on."""
    if step >= warm_steps or max_mult <= 1:
        return radius
    p = 1 - step / warm_steps
    ramp = {"linear": p, "cosine": 0.5 * (1 + math.cos(math.pi * (1 - p))), "exp": (math.exp(p) - 1) / (math.e - 1)}[schedule]
    return radius * (1 + (max_mult - 1) * ramp)


def noisy_sphere_cloud(centre: torch.Tensor, count: int, radius: float, state: StepState) -> torch.Tensor:
    """The released code's reference cloud: half the points at radii spaced from 0.1 to r, half at
    uniform radii in [0, r], in random directions around `centre` (D,), then noised to t."""
    directions = torch.randn(count, centre.numel(), generator=state.generator).to(centre)
    directions = directions / directions.norm(dim=1, keepdim=True)
    half = count // 2
    # as released: linspace(0.1, r) even when r < 0.1 (the radii then run down from 0.1 to r)
    radii = torch.cat([torch.linspace(0.1, radius, half), torch.rand(count - half, generator=state.generator) * radius])
    points = centre + radii.to(centre).unsqueeze(1) * directions
    return state.prior.add_noise(points, state.t, state.generator)


class ManifoldPull(GuidanceTerm):
    """Move x_t toward the local principal plane of a noised cloud around its mode centre."""

    def __init__(
        self, centres: torch.Tensor, scale: float = 0.1, window: Sequence[float] = (0.0, 0.5), points: int = 300,
        neighbours: int = 12, dims: int = 3, radius: float = 0.05, bandwidth: float = 0.2, warm_steps: int = 5,
        max_mult: float = 2.0, schedule: Literal["linear", "cosine", "exp"] = "exp",
    ) -> None:
        super().__init__(scale, window)
        self.centres, self.points, self.neighbours, self.dims = centres, points, neighbours, dims
        self.radius, self.bandwidth = radius, bandwidth
        self.warm_steps, self.max_mult, self.schedule = warm_steps, max_mult, schedule
        self._radius = radius

    def direction(self, state: StepState) -> torch.Tensor:
        flat_x, centres = state.x.detach().flatten(1), self.centres.to(state.x).flatten(1)
        self._radius = warm_radius(self.radius, state.step, self.warm_steps, self.max_mult, self.schedule)
        out = []
        for j in range(len(flat_x)):
            cloud = noisy_sphere_cloud(centres[j], self.points, self._radius, state)
            distance = (cloud - flat_x[j]).norm(dim=1)
            nearest = distance.topk(min(self.neighbours, len(cloud)), largest=False).indices
            centre, basis = tangent_basis(cloud[nearest], self.dims)
            offset = flat_x[j] - centre
            toward = -(offset - basis @ (basis.T @ offset))
            weight = torch.tanh(distance.min() / self.bandwidth)
            out.append(weight * toward / (toward.norm() + 1e-8))
        return torch.stack(out).view_as(state.x)

    def diagnostics(self) -> dict[str, float]:
        return {"radius": self._radius}
