"""A diffusion prior: a diffusers denoiser + its noise schedule (+ a VAE for latent models).

One `Prior` covers the three shapes in use: a class-conditional pixel UNet (ddkit's own
Fashion-MNIST prior), a class-conditional latent DiT with its AutoencoderKL (the standard
ImageNet prior), and text-conditioned UNets (the sampler takes prompt embeddings as the
condition). Samples live in the prior's *sample space*: pixels scaled to [-1, 1], or VAE latents
times the VAE's scaling factor; `encode` / `decode` convert from and to dataset images in [0, 1].

Priors load from a diffusers pipeline directory or hub id (`model_index.json`), or from a bare
model directory (`config.json`). ddkit's own priors are saved in the same layout plus
`ddkit_prior.json` (class names, image shape, data fingerprint, recipe, measured quality).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.diffusion.text import TextEncoder, load_text_encoder
from ddkit.errors import DDKitError
from ddkit.extras import require
from ddkit.runs import read_json

PRIOR_META = "ddkit_prior.json"
DENOISER_KEYS = ("unet", "transformer")
VAE_CHUNK = 64  # images per VAE call: bounds activation memory for 256-px latent priors


@dataclass
class Condition:
    """What a batch is conditioned on: prior class indices, or text-encoder hidden states.

    `null_text` is the embedding of the empty prompt, the unconditional branch of CFG for text
    priors; class priors use their null class instead.
    """

    labels: Optional[torch.Tensor] = None  # (B,) prior class indices
    text: Optional[torch.Tensor] = None  # (B, L, D)
    null_text: Optional[torch.Tensor] = None  # (1, L, D) or (B, L, D)

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else len(self.text)


@dataclass
class Prior:
    model: nn.Module  # UNet2DModel, UNet2DConditionModel or DiTTransformer2DModel
    scheduler: Any  # a diffusers scheduler; its config seeds the sampling scheduler
    vae: Optional[nn.Module] = None
    null_class: Optional[int] = None  # class index of the unconditional branch (CFG)
    meta: dict[str, Any] = field(default_factory=dict)
    text_encoder: Optional[TextEncoder] = None  # text priors: prompts → the UNet's encoder_hidden_states

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def sample_channels(self) -> int:
        return int(self.model.config.in_channels)

    @property
    def sample_size(self) -> int:
        size = self.model.config.sample_size
        return int(size[0] if isinstance(size, (list, tuple)) else size)

    @property
    def image_size(self) -> int:
        """Pixel size of decoded samples."""
        if self.vae is None:
            return self.sample_size
        return self.sample_size * 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_channels(self) -> int:
        return int(self.vae.config.in_channels) if self.vae is not None else self.sample_channels

    @property
    def num_classes(self) -> Optional[int]:
        """Number of real classes the denoiser knows (None for unconditional or text priors)."""
        cfg = self.model.config
        if "num_embeds_ada_norm" in cfg and cfg.get("num_embeds_ada_norm"):
            return int(cfg["num_embeds_ada_norm"])  # DiT: the null class is one extra row
        if cfg.get("num_class_embeds"):
            return int(cfg["num_class_embeds"]) - (1 if self.null_class is not None else 0)
        return None

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    def to(self, device: torch.device) -> "Prior":
        self.model.to(device).eval()
        if self.vae is not None:
            self.vae.to(device).eval()
        if self.text_encoder is not None:
            self.text_encoder.to(device)
        return self

    def prompt_condition(self, prompts: list[str]) -> Condition:
        """Text priors: the condition for one prompt per sample, with the empty prompt as CFG's null."""
        if self.text_encoder is None:
            raise DDKitError(f"prior {self.meta.get('source')} is not text-conditioned; give a text-to-image prior")
        return Condition(text=self.text_encoder.encode(prompts), null_text=self.text_encoder.encode([""]))

    def requires_grad_(self, flag: bool) -> "Prior":
        for module in (self.model, self.vae):
            if module is not None:
                module.requires_grad_(flag)
        return self

    # -- the denoiser -------------------------------------------------------------------------
    def _call(self, x: torch.Tensor, t: int, cond: Condition, unconditional: bool) -> torch.Tensor:
        timesteps = torch.full((len(x),), int(t), device=x.device)
        if cond.text is not None:
            text = cond.null_text.expand(len(x), -1, -1) if unconditional else cond.text
            return self.model(x, timesteps, encoder_hidden_states=text).sample
        if cond.labels is None:
            return self.model(x, timesteps).sample
        labels = torch.full_like(cond.labels, self.null_class) if unconditional else cond.labels
        return self.model(x, timesteps, class_labels=labels).sample

    def model_output(self, x: torch.Tensor, t: int, cond: Condition, cfg_scale: float = 1.0, cfg_channels: int = 0) -> torch.Tensor:
        """The model's prediction (ε or v, per its scheduler), classifier-free guided with `cfg_scale`
        on its first `cfg_channels` channels (0: all sample channels). DiT's released sampler guides
        3 of the 4 latent channels ("for exact reproducibility reasons"); the 4th keeps the
        conditional prediction."""
        has_null = cond.null_text is not None if cond.text is not None else (cond.labels is not None and self.null_class is not None)
        if cfg_scale == 1.0 or not has_null:
            out = self._call(x, t, cond, unconditional=False)
        else:
            both = self._call_pair(x, t, cond)
            conditional, unconditional = both.chunk(2)
            guided = unconditional + cfg_scale * (conditional - unconditional)
            # learned-variance models (DiT) append variance channels: CFG moves ε only; the variance is the conditional one
            channels = min(cfg_channels or self.sample_channels, self.sample_channels)
            out = torch.cat([guided[:, :channels], conditional[:, channels:]], 1)
        return out

    @property
    def learned_variance(self) -> bool:
        """DiT-style models predict ε and a variance interpolation (2 × the sample channels)."""
        return int(getattr(self.model.config, "out_channels", None) or self.sample_channels) == 2 * self.sample_channels

    def _call_pair(self, x: torch.Tensor, t: int, cond: Condition) -> torch.Tensor:
        """Conditional and unconditional branches in one batch."""
        doubled = torch.cat([x, x])
        if cond.text is not None:
            null = cond.null_text.expand(len(x), -1, -1)
            pair = Condition(text=torch.cat([cond.text, null]))
        else:
            pair = Condition(labels=torch.cat([cond.labels, torch.full_like(cond.labels, self.null_class)]))
        return self._call(doubled, t, pair, unconditional=False)

    # -- parameterisation ---------------------------------------------------------------------
    def schedule_at(self, t: int) -> tuple[float, float]:
        """(√ᾱ_t, σ_t = √(1−ᾱ_t)) at timestep t."""
        alpha_bar = float(self.alphas_cumprod[int(t)])
        return alpha_bar ** 0.5, (1 - alpha_bar) ** 0.5

    def predict_eps_x0(self, x: torch.Tensor, output: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = self.schedule_at(t)
        kind = self.scheduler.config.get("prediction_type", "epsilon")
        if kind == "epsilon":
            eps = output
        elif kind == "v_prediction":
            eps = a * output + s * x
        else:  # "sample"
            eps = (x - a * output) / s
        return eps, (x - s * eps) / a

    def add_noise(self, x0: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
        a, s = self.schedule_at(t)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        return a * x0 + s * noise

    # -- images <-> sample space ----------------------------------------------------------------
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Dataset images in [0, 1] (any size/channels the prior accepts) → sample space."""
        x = _fit_channels(images, self.image_channels)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
        x = x.to(self.device) * 2 - 1
        if self.vae is None:
            return x
        with torch.no_grad():
            latents = torch.cat([self.vae.encode(chunk).latent_dist.mean for chunk in x.split(VAE_CHUNK)])
        return latents * self.vae.config.scaling_factor

    def decode(self, samples: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
        """Sample space → images in [0, 1] of the dataset's shape (C, H, W), on the CPU."""
        with torch.no_grad():
            return self.images(samples, image_shape).cpu()

    def images(self, samples: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
        """`decode`, differentiable and on the prior's device (for guidance through a classifier)."""
        x = samples
        if self.vae is not None:
            x = torch.cat([self.vae.decode(chunk / self.vae.config.scaling_factor).sample for chunk in x.split(VAE_CHUNK)])
        x = ((x.float() + 1) / 2).clamp(0, 1)
        if x.shape[-1] != image_shape[-1]:
            x = F.interpolate(x, size=image_shape[1:], mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
        return _fit_channels(x, image_shape[0])


def _fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1)
    if channels == 1:
        return x.mean(1, keepdim=True)
    raise DDKitError(f"cannot convert {x.shape[1]}-channel images to the prior's {channels} channels")


def load_prior(source: str | Path, device: torch.device = torch.device("cpu")) -> Prior:
    """A prior from a diffusers pipeline (directory or hub id) or a bare model directory."""
    diffusers = require("diffusers", "a diffusion prior")
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    path = Path(source)
    try:
        if (path / "config.json").is_file() and not (path / "model_index.json").is_file():
            config = json.loads((path / "config.json").read_text())
            model = getattr(diffusers, config["_class_name"]).from_pretrained(path, low_cpu_mem_usage=False)
            scheduler = _scheduler_beside(path) or diffusers.DDPMScheduler()
            vae, text_encoder = None, None
        else:
            pipeline = diffusers.DiffusionPipeline.from_pretrained(str(source), low_cpu_mem_usage=False)
            parts = pipeline.components
            key = next((k for k in DENOISER_KEYS if parts.get(k) is not None), None)
            if key is None:
                raise DDKitError(f"{source} holds no UNet or transformer; give a diffusion pipeline or model directory")
            model, scheduler, vae = parts[key], parts["scheduler"], parts.get("vae")
            text_encoder = _pipeline_text_encoder(parts, str(source))
    except (OSError, ValueError, KeyError, AttributeError) as err:
        raise DDKitError(f"cannot load a diffusion prior from {source} ({str(err).splitlines()[0][:160]}); "
                         "give a diffusers pipeline or model directory, or a hub id") from None
    meta = read_json(path / PRIOR_META) if (path / PRIOR_META).is_file() else {}
    if meta.get("text_encoder"):  # ddkit's text priors name their (separately shipped) encoder
        text_encoder = load_text_encoder(meta["text_encoder"], int(meta["text_length"]))
    prior = Prior(model, scheduler, vae, null_class=None, meta=meta | {"source": str(source)}, text_encoder=text_encoder)
    prior.null_class = _null_class(prior)
    return prior.to(device).requires_grad_(False)


def _pipeline_text_encoder(parts: dict[str, Any], source: str) -> Optional[TextEncoder]:
    """A Stable-Diffusion-style pipeline's own text encoder and tokenizer, if it has them."""
    model, tokenizer = parts.get("text_encoder"), parts.get("tokenizer")
    if model is None or tokenizer is None:
        return None
    return TextEncoder(tokenizer, model, int(tokenizer.model_max_length), f"{source}/text_encoder")


def _scheduler_beside(path: Path) -> Optional[Any]:
    diffusers = require("diffusers", "a diffusion prior")
    folder = path.parent / "scheduler"
    if (folder / "scheduler_config.json").is_file():
        config = json.loads((folder / "scheduler_config.json").read_text())
        return getattr(diffusers, config["_class_name"]).from_pretrained(folder)
    return None


def _null_class(prior: Prior) -> Optional[int]:
    """The unconditional class: ddkit's metadata says; DiT uses index num_classes; otherwise none."""
    if "null_class" in prior.meta:
        return prior.meta["null_class"]
    cfg = prior.model.config
    if cfg.get("num_embeds_ada_norm"):
        return int(cfg["num_embeds_ada_norm"])
    return None
