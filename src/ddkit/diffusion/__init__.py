"""Diffusion priors, the guided sampler and its guidance terms."""

from ddkit.diffusion.prior import Condition, Prior, load_prior
from ddkit.diffusion.sampler import GuidanceTerm, SamplerConfig, StepState, sample

__all__ = ["Condition", "GuidanceTerm", "Prior", "SamplerConfig", "StepState", "load_prior", "sample"]
