"""Models: the registry, the built-in small-image architectures, timm/torchvision adapters,
the pixel-space `Classifier` wrapper and teachers (see `ddkit.models.teachers`)."""

from ddkit.models import convnet, mlp, mobilenet, resnet  # noqa: F401  (register the built-in architectures)
from ddkit.models._registry import MODELS, describe_models, register_model
from ddkit.models.classifier import EXTERNAL_PREFIXES, Classifier, ModelSpec, build_model

__all__ = ["EXTERNAL_PREFIXES", "MODELS", "Classifier", "ModelSpec", "build_model", "describe_models", "register_model"]
