"""PRISM-DFKD (He et al., "PRISM: Precision-Recall Informed Data-Free Knowledge Distillation via
Generative Diffusion", arXiv 2509.16897; no public code): a transfer set for data-free
knowledge distillation, sampled from a text-to-image prior.

- **EDA** (precision): the teacher's free energy of x̂₀ guides sampling (`energy_*`), and each
  class's highest-energy samples are dropped (`filter_fraction`, oversampling to keep IPC).
- **DPE** (recall): diversified prompts — WordNet-disambiguated names, varied content and style
  (`prompts`, see `ddkit.prompts.builder`).

`text-diffusion` is the baseline the paper improves on: bare class-name prompts, no guidance.
The method reads no training image: only the class names, the teacher and the prior, so it runs
on a `class-list` dataset that has none (`prism-dfkd-imagenet`: ImageNet's 1,000 WordNet ids, a
Stable Diffusion pipeline, a torchvision teacher). (ddkit's embedded Fashion-MNIST text prior was
itself trained on the training images, so on the embedded default only the distillation step is
data-free; with an off-the-shelf prior the whole is.)
Students then learn from the set and the teacher's soft outputs under a `dfkd` preset.

| knob                                   | field                                                 |
|----------------------------------------|-------------------------------------------------------|
| text-to-image prior                    | `prior`, `resize`                                     |
| teacher (energy, filter, KD)           | `teacher`                                             |
| DPE axes, prompts per class, own file  | `prompts.{disambiguate,content,style,per_class,file}` |
| EDA scale, objective, T, step window   | `energy_scale`, `energy_objective`, `energy_temperature`, `energy_window` |
| energy filter                          | `filter_fraction`, `max_energy`                       |
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from ddkit.config import hash_dict, to_dict
from ddkit.curves import CurveLog
from ddkit.data.distilled import DistilledSet
from ddkit.diffusion.energy import EnergyGuidance, Objective, energy_objective, keep_lowest_energy
from ddkit.diffusion.prior import Prior
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.errors import DDKitError
from ddkit.methods.base import Method, SynthesisContext, register_method
from ddkit.methods.guided_diffusion import WorkItem, check_prior_images, work_items
from ddkit.methods.runner import run_items
from ddkit.presets import preset_names
from ddkit.prompts.builder import PromptOptions, PromptSet, build_prompts
from ddkit.runs import config_hash
from ddkit.seeds import item_seed
from ddkit.training import predict_logits


@dataclass(frozen=True)
class PrismDFKDConfig:
    prior: str = "fashion-mnist-text-unet"  # a text prior recipe, or a text-to-image diffusers pipeline dir / hub id
    resize: bool = False  # allow a prior whose image size differs from the dataset's (samples are resized)
    teacher: str = "convnet-bn"  # teacher recipe whose energy guides and filters the samples
    prompts: PromptOptions = field(default_factory=PromptOptions)  # vocabulary "": the dataset's own, else generic
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    batch: int = 10  # samples per work item (one class)
    # Chosen on the validation split (benchmarks/results/dfkd-tune.md): larger scales turn the
    # teacher's pixel gradient into adversarial stripes (precision 0.82 → 0.09 at 0.1, all steps).
    energy_scale: float = 0.03  # 0 turns EDA guidance off
    energy_objective: Objective = "energy"  # what EDA descends: free energy, −logit of the class, or energy + cross-entropy
    energy_temperature: float = 1.0  # T of the free energy −T·logsumexp(f/T)
    energy_window: list[float] = field(default_factory=lambda: [0.0, 0.5])  # [start, end) fractions of the steps where EDA guidance acts
    filter_fraction: float = 0.1  # share of each class's samples dropped as highest-energy; 0: no filter
    max_energy: Optional[float] = None  # also drop samples above this energy

    def __post_init__(self) -> None:
        if len(self.energy_window) != 2 or not 0 <= self.energy_window[0] < self.energy_window[1] <= 1:
            raise ValueError(f"energy_window must be two fractions 0 <= start < end <= 1, got {self.energy_window}")
        if not 0 <= self.filter_fraction < 1:
            raise ValueError(f"filter_fraction must lie in [0, 1), got {self.filter_fraction}")
        if self.batch < 1 or self.energy_temperature <= 0:
            raise ValueError("batch must be >= 1 and energy_temperature > 0")


@register_method("prism-dfkd")
class PrismDFKD(Method):
    config_class = PrismDFKDConfig
    extras = ("diffusion", "text")
    reads_training_images = False
    smoke_options = {"prior": "test-text-unet", "sampler": {"steps": 2}, "prompts": {"per_class": 2}}

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        cfg, train = self.config, ctx.splits.train
        teacher = ctx.teacher(cfg.teacher)
        check_classes(teacher.model, train.num_classes, train.image_shape, cfg.teacher)
        prior = ctx.load_prior(cfg.prior)
        check_text_prior(prior, train.image_shape, cfg)
        options = cfg.prompts
        if not options.vocabulary:
            vocabulary = ctx.splits.name if ctx.splits.name in preset_names("prompts") else "generic"
            options = PromptOptions(**{**to_dict(options), "vocabulary": vocabulary})
        prompts = build_prompts(options, train.class_names, ctx.seed)
        per_class = math.ceil(ctx.ipc / (1 - cfg.filter_fraction)) if cfg.filter_fraction else ctx.ipc
        items = work_items(per_class, train.num_classes, cfg.batch)
        fingerprint = config_hash({"config": hash_dict(cfg), "prompts": prompts.prompts, "seed": ctx.seed,
                                   "prior": prior.meta.get("source"), "teacher": teacher.label, "per_class": per_class})
        images = torch.zeros(per_class, train.num_classes, *train.image_shape)
        made = run_items(items, fingerprint,
                         lambda item: (sample_item(prior, teacher.model, prompts, item, cfg, ctx.seed, train.image_shape,
                                                   ctx.curves.child(f"guidance/{item.key}")), {}),
                         "sample", ctx.workdir, ctx.progress)
        for item, (block, _) in zip(items, made):
            images[list(item.indices), item.label] = block
        kept, reports, chosen_prompts = [], {}, []
        for c, name in enumerate(train.class_names):
            energies = energy_objective(predict_logits(teacher.model, images[:, c]), torch.full((per_class,), c),
                                        "energy", cfg.energy_temperature)
            order, report = keep_lowest_energy(energies, ctx.ipc, cfg.max_energy, f"class {name!r}")
            kept.append(images[order, c])
            chosen_prompts.append([prompts.prompt(c, int(j)) for j in order])
            reports[name] = {"generated": report.generated, "kept": report.kept,
                             "rejection_rate": round(report.rejection_rate, 4), "max_kept_energy": report.threshold}
        labels = torch.arange(train.num_classes).repeat_interleave(ctx.ipc)
        meta = {"prior": {k: prior.meta.get(k) for k in ("source", "metrics")}, "teacher": teacher.label,
                "prompts": prompts.to_json(train.class_names) | {"per_image": sum(chosen_prompts, [])},
                "energy_filter": reports, "data_free": True}
        return DistilledSet(torch.cat(kept), labels, train.class_names, train.mean, train.std, meta=meta)


def sample_item(
    prior: Prior, teacher: torch.nn.Module, prompts: PromptSet, item: WorkItem, cfg: PrismDFKDConfig, seed: int,
    image_shape: tuple[int, int, int], curves: Optional[CurveLog] = None,
) -> torch.Tensor:
    """One class's block of samples, each with its own prompt, EDA-guided when energy_scale > 0."""
    generator = torch.Generator().manual_seed(item_seed(seed, "prism-dfkd", item.label, item.indices))
    cond = prior.prompt_condition([prompts.prompt(item.label, j) for j in item.indices])
    terms = []
    if cfg.energy_scale:
        labels = torch.full((len(item.indices),), item.label, device=prior.device)
        terms.append(EnergyGuidance(teacher, labels, image_shape, cfg.energy_scale, cfg.energy_window,
                                    cfg.energy_temperature, cfg.energy_objective))
    samples = sample(prior, cond, generator, cfg.sampler, terms, curves=curves)
    return prior.decode(samples.detach(), image_shape)


def check_classes(model: torch.nn.Module, num_classes: int, image_shape: tuple[int, int, int], name: str) -> None:
    with torch.no_grad():
        outputs = predict_logits(model, torch.zeros(1, *image_shape)).shape[1]
    if outputs != num_classes:
        raise DDKitError(f"teacher {name} predicts {outputs} classes but the prompts cover {num_classes}; "
                         "use a teacher trained on this dataset's classes")


def check_text_prior(prior: Prior, image_shape: tuple[int, int, int], cfg: PrismDFKDConfig) -> None:
    if prior.text_encoder is None:
        raise DDKitError(f"prior {cfg.prior} is not text-conditioned; PRISM-DFKD needs a text-to-image prior "
                         "(e.g. fashion-mnist-text-unet or a Stable Diffusion pipeline)")
    check_prior_images(prior, image_shape, cfg.prior, cfg.resize)


@dataclass(frozen=True)
class TextDiffusionConfig(PrismDFKDConfig):
    prompts: PromptOptions = field(default_factory=lambda: PromptOptions(disambiguate=False, content=False, style=False))
    energy_scale: float = 0.0
    filter_fraction: float = 0.0


@register_method("text-diffusion")
class TextDiffusion(PrismDFKD):
    """The plain text-to-image baseline: the bare prompt "a photo of a <class>", no guidance."""

    config_class = TextDiffusionConfig
