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

`variant="released"` follows the authors' released code instead, which differs from the paper:
the projected term plus the unprojected term plus a pull of x_t toward the PCA plane of the
neighbour cloud, −(I − UUᵀ)(x_t − centre) σ_t.
"""

from __future__ import annotations

from typing import Literal

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
        return torch.stack(out).view_as(raw)
