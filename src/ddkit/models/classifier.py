"""`ModelSpec`, the pixel-space `Classifier` wrapper and `build_model`.

Every model ddkit trains or loads takes pixel-space images ([0, 1] for real data) and normalises
them itself, so distilled sets, augmentations and teachers of different origins (dataset stats
for our small nets, ImageNet stats for timm/torchvision weights) can be mixed freely.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import yaml
from torch import nn

from ddkit.errors import DDKitError
from ddkit.models._registry import MODELS, Builder

EXTERNAL_PREFIXES = ("timm:", "torchvision:")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    weights: Optional[str] = None  # file, directory or "hub" (external models only)

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.name}({opts})" if opts else self.name


def parse_model_spec(text: str) -> ModelSpec:
    """`name` or `name(key=value,...)`, e.g. `convnet(depth=6,norm=instance)`: the form `ModelSpec.label()`
    prints. Values read as YAML with ddkit's scalars (`6`, `1e-3`, `[16, 8]`); `weights=` sets an
    external model's weights. Unknown models and options are errors here, before anything trains."""
    from ddkit.config import parse_yaml

    text = text.strip()
    match = re.fullmatch(r"([^()\s]+)(?:\((.*)\))?", text, re.DOTALL)
    if not match or not match.group(1):
        raise DDKitError(f"student {text!r} must look like name or name(key=value,...)")
    options = {}
    for part in split_top_level(match.group(2) or ""):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise DDKitError(f"student {text!r}: option {part!r} must look like key=value")
        try:
            options[key.strip()] = parse_yaml(raw)
        except yaml.YAMLError:
            raise DDKitError(f"student {text!r}: {raw!r} is not a valid value") from None
    weights = options.pop("weights", None)
    return checked_spec(ModelSpec(match.group(1), options, None if weights is None else str(weights)))


def model_spec(entry: str | dict[str, Any]) -> ModelSpec:
    """A run's student: the text form above, or a mapping {name, options, weights}."""
    if isinstance(entry, str):
        return parse_model_spec(entry)
    if "name" not in entry or set(entry) - {"name", "options", "weights"} or not isinstance(entry.get("options", {}), dict):
        raise DDKitError(f"student {entry!r}: a mapping needs 'name' and may have 'options' (a mapping) and 'weights'")
    weights = entry.get("weights")
    return checked_spec(ModelSpec(str(entry["name"]), dict(entry.get("options", {})), None if weights is None else str(weights)))


def checked_spec(spec: ModelSpec) -> ModelSpec:
    """`spec`, once its architecture and option names are known to exist."""
    if not spec.name.startswith(EXTERNAL_PREFIXES):
        _check_options(spec, MODELS.get(spec.name))
    return spec


def split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets: "a(x=1,y=2),b" → ["a(x=1,y=2)", "b"]."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


class Classifier(nn.Module):
    """Pixel-space classifier: normalises, adapts channels, then runs the network body."""

    def __init__(self, body: nn.Module, mean: tuple[float, ...], std: tuple[float, ...], in_channels: int) -> None:
        super().__init__()
        self.body = body
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)
            else:
                raise DDKitError(f"model expects {self.in_channels}-channel images, got {x.shape[1]}")
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self._prepare(x))

    def final_linear(self) -> nn.Linear:
        """The last linear layer: it maps `features` to the logits."""
        return [m for m in self.body.modules() if isinstance(m, nn.Linear)][-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (input to the final linear layer)."""
        x = self._prepare(x)
        if hasattr(self.body, "embed"):
            return self.body.embed(x)
        if hasattr(self.body, "forward_head"):  # timm
            return self.body.forward_head(self.body.forward_features(x), pre_logits=True)
        captured: list[torch.Tensor] = []
        handle = self.final_linear().register_forward_hook(lambda _m, inputs, _o: captured.append(inputs[0]))
        try:
            self.body(x)
        finally:
            handle.remove()
        return captured[0]


def build_model(
    spec: ModelSpec,
    num_classes: int,
    image_shape: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    seed: int = 0,
) -> Classifier:
    """Build `spec` with seeded initialisation; external models load `spec.weights`."""
    in_channels, height, _ = image_shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.name.startswith(EXTERNAL_PREFIXES):
            from ddkit.models.external import build_external

            return build_external(spec, num_classes, in_channels)
        builder = MODELS.get(spec.name)
        _check_options(spec, builder)
        if spec.weights:
            raise DDKitError(f"model {spec.name!r} takes no weights option; squeeze a teacher or load it with 'teacher.weights'")
        try:
            body = builder(num_classes=num_classes, in_channels=in_channels, image_size=height, **spec.options)
        except (TypeError, ValueError) as err:
            raise DDKitError(f"model {spec.label()}: {err}") from None
    return Classifier(body, mean, std, in_channels)


def _check_options(spec: ModelSpec, builder: Builder) -> None:
    params = inspect.signature(builder).parameters
    allowed = [n for n in params if n not in ("num_classes", "in_channels", "image_size")]
    for key in spec.options:
        if key not in allowed:
            raise DDKitError(f"unknown option {key!r} for model {spec.name!r}; valid options: {', '.join(allowed) or 'none'}")
