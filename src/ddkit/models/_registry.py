"""The model registry (timm's `_registry.py` pattern): architectures register here, and nothing
here imports them, so `ddkit.models` can import every architecture without a cycle."""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from ddkit.registry import Registry

Builder = Callable[..., nn.Module]
MODELS: Registry[Builder] = Registry("model")


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Register `fn(num_classes, in_channels, image_size, **options) -> nn.Module`."""
    return MODELS.register(name)


def describe_models() -> dict[str, str]:
    described = {}
    for name in MODELS.names():
        params = inspect.signature(MODELS.get(name)).parameters
        opts = [f"{p.name}={p.default!r}" for p in params.values() if p.default is not inspect.Parameter.empty]
        described[name] = ", ".join(opts)
    described["timm:<name>"] = "any timm model; weights=FILE|DIR|hub"
    described["torchvision:<name>"] = "any torchvision classifier; weights=FILE|DIR|hub"
    return described
