"""Synthesis methods: one file each, registered with `@register_method`."""

from __future__ import annotations

# Register the built-in methods.
from ddkit.methods import (  # noqa: E402,F401
    distribution_matching,
    gradient_matching,
    guided_diffusion,
    herding,
    inversion,
    kcenter,
    prism_dfkd,
    random_subset,
    rded,
)
from ddkit.methods.base import (
    METHODS,
    Method,
    SynthesisContext,
    register_method,
    resolve_config,
    synthesize,
)

__all__ = ["METHODS", "Method", "SynthesisContext", "register_method", "resolve_config", "synthesize"]
