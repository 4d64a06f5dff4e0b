"""Intermediate features of the diffusion network itself (DAP's kernel feature map φ(x, t)),
and the kernel distances DAP measures between them."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ddkit.diffusion.prior import Condition, Prior
from ddkit.errors import DDKitError


class _Captured(Exception):
    """Raised by the hook: the network stops once the layer has run, so φ costs a partial pass."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


def default_feature_layer(model: nn.Module) -> str:
    names = dict(model.named_modules())
    if "mid_block" in names:
        return "mid_block"
    if "transformer_blocks.0" in names:
        blocks = sum(1 for name in names if name.count(".") == 1 and name.startswith("transformer_blocks."))
        return f"transformer_blocks.{blocks // 2}"
    raise DDKitError(f"no default feature layer for {type(model).__name__}; set feature_layer to one of: "
                     f"{', '.join(layer_choices(model))}")


def layer_choices(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name and name.count(".") <= 1]


def find_layer(model: nn.Module, name: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not name or name not in modules:
        raise DDKitError(f"feature layer {name!r} is not in {type(model).__name__}; choose one of: "
                         f"{', '.join(layer_choices(model))}")
    return modules[name]


def layer_features(prior: Prior, layer: nn.Module, x: torch.Tensor, t: int, cond: Condition) -> torch.Tensor:
    """φ(x, t): the output of `layer` when the (conditional) denoiser runs on x at t, flattened."""

    def hook(_module: nn.Module, _inputs: tuple, output) -> None:
        raise _Captured(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        prior.model_output(x, t, cond, cfg_scale=1.0)
    except _Captured as captured:
        return captured.value.flatten(1)
    finally:
        handle.remove()
    raise DDKitError("the feature layer did not run in the denoiser's forward pass; choose another feature_layer")


def kernel_distance(features: torch.Tensor, reference: torch.Tensor, kernel: Literal["linear", "rbf"]) -> torch.Tensor:
    """(B, N) distances in the kernel's feature space: ‖φ(a) − φ(b)‖ for the linear kernel,
    √(2 − 2k(a, b)) for the RBF kernel with the median-distance bandwidth of the reference set.
    `reference` is (N, D), shared by every row of `features`, or (B, N, D), each row its own."""
    own = reference if reference.ndim == 3 else reference.unsqueeze(0)
    squared = (features.unsqueeze(1) - own).pow(2).sum(-1)
    if kernel == "linear":
        return (squared + 1e-12).sqrt()
    with torch.no_grad():
        bandwidth = median_squared_distance(own, squared)
    similarity = torch.exp(-squared / (2 * bandwidth))
    return (2 - 2 * similarity + 1e-12).sqrt()


def median_squared_distance(reference: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """(R, 1): the median squared distance between distinct points of each of the R reference sets;
    with one point per set, the median of `fallback` (the distances to the features)."""
    sets, count = reference.shape[:2]
    if count < 2:
        return fallback.median().clamp_min(1e-12).expand(sets, 1)
    pairwise = torch.cdist(reference, reference).pow(2)
    off_diagonal = pairwise[:, ~torch.eye(count, dtype=torch.bool, device=pairwise.device)]
    return off_diagonal.median(dim=1).values.clamp_min(1e-12).unsqueeze(1)
