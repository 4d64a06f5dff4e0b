"""Models: the registry, the built-in small-image architectures, timm/torchvision adapters,
the pixel-space `Classifier` wrapper and teachers (see `ddkit.models.teachers`)."""

from ddkit.models import convnet, mlp, mobilenet, resnet, resnet_ap  # noqa: F401  (register the built-in architectures)
from ddkit.models._registry import MODELS, describe_models, register_model
from ddkit.models.classifier import EXTERNAL_PREFIXES, Classifier, ModelSpec, build_model, model_spec, parse_model_spec, split_top_level

__all__ = ["EXTERNAL_PREFIXES", "MODELS", "Classifier", "ModelSpec", "build_model", "describe_models", "model_spec", "parse_model_spec",
           "register_model", "split_top_level"]
