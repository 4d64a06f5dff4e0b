"""`timm:<name>` and `torchvision:<name>`: any ImageNet classifier, weights from a file, a dir or the hub.

With `weights` a file or directory, the model is built without downloading and the weights are
loaded safely (safetensors or weights-only torch files). With `weights: hub`, the library's own
pretrained loader runs (it needs network access to the hub or a warm cache).
"""

from __future__ import annotations

from pathlib import Path

from ddkit.errors import DDKitError
from ddkit.models.checkpoint import load_weights
from ddkit.models.classifier import Classifier, ModelSpec

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_external(spec: ModelSpec, num_classes: int, in_channels: int) -> Classifier:
    source, name = spec.name.split(":", 1)
    hub = spec.weights == "hub"
    try:
        if source == "timm":
            body, channels, mean, std = _timm(name, num_classes, in_channels, hub, spec.options)
        else:
            body, channels, mean, std = _torchvision(name, num_classes, hub, spec.options)
    except (RuntimeError, ValueError, KeyError, OSError) as err:
        raise DDKitError(f"cannot build {spec.name}: {str(err).splitlines()[0][:200]}") from None
    if spec.weights and not hub:
        load_weights(body, Path(spec.weights))
    return Classifier(body, mean, std, channels)


def _timm(name: str, num_classes: int, in_channels: int, hub: bool, options: dict):
    import timm

    if not hub and name not in timm.list_models() and not name.startswith("hf-hub:"):
        raise DDKitError(f"unknown timm model {name!r}; see timm.list_models()")
    body = timm.create_model(name, pretrained=hub, num_classes=num_classes, in_chans=in_channels, **options)
    cfg = body.pretrained_cfg
    mean, std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))
    if len(mean) != in_channels:  # e.g. grayscale input to an RGB recipe: timm averages the stem, we the stats
        mean, std = (sum(mean) / len(mean),) * in_channels, (sum(std) / len(std),) * in_channels
    return body, in_channels, mean, std


def _torchvision(name: str, num_classes: int, hub: bool, options: dict):
    import torchvision

    if name not in torchvision.models.list_models():
        raise DDKitError(f"unknown torchvision model {name!r}; see torchvision.models.list_models()")
    body = torchvision.models.get_model(name, weights="DEFAULT" if hub else None, num_classes=num_classes, **options)
    return body, 3, IMAGENET_MEAN, IMAGENET_STD
