"""Squeeze a prior: train a small class-conditional UNet (DDPM ε-objective, EMA) on a dataset.

A prior is named by a recipe in `presets/priors/<name>.yaml`. Like teachers, its cache entry is
keyed by the training data's content hash and the resolved recipe; the entry is a diffusers
pipeline directory (`unet/`, `scheduler/`, `model_index.json`) plus `ddkit_prior.json`, so
`load_prior` reads ddkit's priors and downloaded ones alike. Entries shipped inside the package
(`ddkit/diffusion/weights/`) are used when their key matches, so the demo needs no training.

Quality check: after training, `check_per_class` samples per class are drawn and classified by
a ddkit teacher; the share classified as their conditioning class is the prior's
`teacher_agreement`, stored with the entry.

Under torchrun every rank calls `resolve_prior` together. Rank 0 alone verifies (and repairs)
the cache and holds its lock; a prior to train is trained by all ranks under DistributedDataParallel:
every rank draws the whole batch's order, noise, timesteps and label dropout from the shared epoch
generator (cheap) and reads and denoises only its contiguous slice of the batch, so a run differs
from one process only in float summation order. Rank 0 alone writes the per-epoch resume point
and the final directory; the others then load it. The resume point holds no per-rank state, so
an interrupted run resumes with the same or another number of processes.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch.nn.parallel import DistributedDataParallel

from ddkit import distributed
from ddkit.config import ADDED_OPTION, build, hash_dict, load_yaml, merge, to_dict
from ddkit.curves import CurveLog, log_interval
from ddkit.data.images import DataSplits
from ddkit.devices import device_label
from ddkit.diffusion.captions import CaptionTable, attribute_levels
from ddkit.diffusion.prior import PRIOR_META, Condition, Prior, load_prior
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.diffusion.text import TextEncoder, load_text_encoder
from ddkit.errors import DDKitError
from ddkit.extras import require
from ddkit.locks import exclusive
from ddkit.models.teachers import Teacher
from ddkit.presets import preset_names, preset_path
from ddkit.progress import steps
from ddkit.prompts.builder import class_prompts, glosses_for, load_vocabulary
from ddkit.runs import (
    OutputKind,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_json,
    checksums,
    config_hash,
    default_cache_dir,
    environment,
    open_workdir,
    read_json,
    remove_workdir,
    verify_checksums,
)
from ddkit.seeds import item_seed
from ddkit.training import INFERENCE_BATCH, load_resume_point, predict_logits, rank_slice, weighted_loss

SHIPPED = Path(__file__).resolve().parent / "weights"
RESUME, CURVES = "resume.pt", "curves"
PRIOR_DIR = OutputKind("diffusion prior", lambda folder: (folder / PRIOR_META).is_file())
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PriorRecipe:
    name: str
    channels: list[int] = field(default_factory=lambda: [32, 64, 64])  # one UNet level each, /2 between
    layers_per_block: int = 1
    norm_groups: int = 8
    epochs: int = 20
    schedule_epochs: int = 0  # horizon of the cosine learning-rate decay; 0: `epochs` (stop early when larger)
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 200
    ema_decay: float = 0.999
    class_dropout: float = 0.1  # labels replaced by the null class: trains the CFG branch
    train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    seed: int = 0
    check_teacher: str = "convnet-bn"
    check_per_class: int = 100
    check_sampler: SamplerConfig = field(default_factory=SamplerConfig)
    # text priors: captioned by `vocabulary` (ddkit.diffusion.captions), encoded by `text_encoder`
    text_encoder: str = field(default="", metadata=ADDED_OPTION)  # empty: a class-conditional prior
    text_length: int = field(default=32, metadata=ADDED_OPTION)  # tokens per prompt (padded / truncated)
    vocabulary: str = field(default="", metadata=ADDED_OPTION)
    caption_keep: float = field(default=0.7, metadata=ADDED_OPTION)  # chance each true attribute word is in a caption
    init: str = field(default="", metadata=ADDED_OPTION)  # a prior recipe whose matching weights start training

    def __post_init__(self) -> None:
        if bool(self.text_encoder) != bool(self.vocabulary):
            raise ValueError("a text prior needs both text_encoder and vocabulary")
        if not self.channels or any(c % self.norm_groups for c in self.channels):
            raise ValueError(f"channels {self.channels} must be non-empty multiples of norm_groups={self.norm_groups}")


def prior_recipe(name: str, overrides: Optional[dict[str, Any]] = None) -> PriorRecipe:
    if name not in preset_names("priors"):
        raise DDKitError(f"unknown prior recipe {name!r}; choose one of: {', '.join(preset_names('priors'))}")
    data = merge(load_yaml(preset_path("priors", name)), overrides or {})
    return build(PriorRecipe, {"name": name, **data}, where=f"prior {name}")


def build_unet(recipe: PriorRecipe, image_shape: tuple[int, int, int], num_classes: int, text_dim: int = 0):
    """Class priors: UNet2DModel with a null class. Text priors: the same UNet as a
    UNet2DConditionModel whose middle block cross-attends to the prompt tokens and whose time
    embedding adds an attention-pooled prompt embedding (diffusers' `addition_embed_type="text"`),
    so it is driven by `encoder_hidden_states` exactly like a Stable-Diffusion UNet."""
    diffusers = require("diffusers", "training a diffusion prior")
    channels, size = image_shape[0], image_shape[1]
    if size % 2 ** (len(recipe.channels) - 1):
        raise DDKitError(f"{size}-px images cannot be halved {len(recipe.channels) - 1} times; use fewer channel levels")
    levels = len(recipe.channels)
    if recipe.text_encoder:
        return diffusers.UNet2DConditionModel(
            sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=tuple(recipe.channels),
            layers_per_block=recipe.layers_per_block, norm_num_groups=recipe.norm_groups,
            down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
            mid_block_type="UNetMidBlock2DCrossAttn", cross_attention_dim=text_dim, addition_embed_type="text",
            attention_head_dim=max(1, recipe.channels[-1] // 8),
        )
    return diffusers.UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=tuple(recipe.channels),
        layers_per_block=recipe.layers_per_block, norm_num_groups=recipe.norm_groups,
        down_block_types=("DownBlock2D",) * levels, up_block_types=("UpBlock2D",) * levels,
        num_class_embeds=num_classes + 1,  # the last row is the null class of classifier-free guidance
    )


def make_train_scheduler(recipe: PriorRecipe):
    diffusers = require("diffusers", "training a diffusion prior")
    return diffusers.DDPMScheduler(num_train_timesteps=recipe.train_timesteps, beta_schedule=recipe.beta_schedule,
                         prediction_type="epsilon", clip_sample=False)


def entry_name(recipe: PriorRecipe, splits: DataSplits) -> str:
    key = config_hash({"data": splits.fingerprint, "recipe": hash_dict(recipe), "format": 1})
    return f"{recipe.name}-{key}"


class PriorPool:
    """Loads each prior once per process: shipped, cached, or trained into the cache (checked by
    the pool's teachers), or any diffusers source. The priors' side of a `SynthesisContext`."""

    def __init__(
        self, splits: DataSplits, teachers: Callable[[str], Teacher], cache_dir: Optional[Path] = None,
        progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"),
    ) -> None:
        self.splits, self.teachers, self.cache_dir, self.progress, self.device = splits, teachers, cache_dir, progress, device
        self._loaded: dict[str, Prior] = {}

    def __call__(self, source: str) -> Prior:
        """A prior by recipe name (ddkit list presets), diffusers directory or hub id."""
        if source not in self._loaded:
            self._loaded[source] = resolve_prior(source, self.splits, self.teachers, self.cache_dir, self.progress, self.device)
        return self._loaded[source]


def resolve_prior(
    source: str | PriorRecipe, splits: DataSplits, teacher: Callable[[str], Teacher], cache_dir: Optional[Path] = None,
    progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"), retrain: bool = False,
) -> Prior:
    """A shipped/cached prior by recipe (squeezed first if needed), or any diffusers source."""
    if isinstance(source, str) and source not in preset_names("priors"):
        log.info("prior: loading %s", source)
        return load_prior(source, device)
    recipe = prior_recipe(source) if isinstance(source, str) else source
    entry = entry_name(recipe, splits)
    cached = Path(cache_dir or default_cache_dir()) / "priors" / splits.name / entry
    shipped = SHIPPED / splits.name / entry
    if not retrain:
        prior = _load_everywhere(lambda: _load_cached(cached, device) or _load_shipped(shipped, device), device)
        if prior is not None:
            log.info("prior %s: reusing %s", recipe.name, prior.meta["source"])
            return prior
    with distributed.main_holds(exclusive(cached, f"prior {recipe.name} ({cached})")):
        # another job may have trained it meanwhile
        prior = None if retrain else _load_everywhere(lambda: _load_cached(cached, device), device)
        if prior is None:
            log.info("prior %s: training it into %s", recipe.name, cached)
            squeeze_prior(recipe, splits, cached, teacher, progress, device, cache_dir)
            prior = load_prior(cached, device)
    return prior


def _load_everywhere(find: Callable[[], Optional[Prior]], device: torch.device) -> Optional[Prior]:
    """Rank 0 runs `find` (which verifies, and may repair the cache); every other rank loads the
    folder it found, so no two ranks check or repair one entry at once."""
    found: list[Optional[Prior]] = [None]

    def look() -> Optional[str]:
        found[0] = find()
        return None if found[0] is None else found[0].meta["source"]

    source = distributed.on_main(look)
    if found[0] is not None or source is None:
        return found[0]
    return load_prior(source, device)


def _load_cached(folder: Path, device: torch.device) -> Optional[Prior]:
    """A finished cache entry, verified against its checksums; None if absent or damaged (then it is re-trained)."""
    try:
        return _load_verified(folder, device)
    except DDKitError as err:
        log.warning("cached prior %s is damaged (%s); training it again", folder, err)
        shutil.rmtree(folder)  # ddkit's own entry (it holds ddkit_prior.json): never loaded again
        return None


def _load_shipped(folder: Path, device: torch.device) -> Optional[Prior]:
    try:
        return _load_verified(folder, device)
    except DDKitError as err:
        raise DDKitError(f"the prior shipped with ddkit is damaged ({err}); reinstall ddkit, "
                         "or train it into the cache with 'ddkit squeeze-prior --retrain'") from None


def _load_verified(folder: Path, device: torch.device) -> Optional[Prior]:
    """ddkit's prior in `folder`, checked against its checksums; None when there is none."""
    if not (folder / PRIOR_META).is_file():
        return None
    meta = read_json(folder / PRIOR_META)
    if "checksums" not in meta:  # written before checksums existed: trusted only because it loads
        prior = load_prior(folder, device)
        atomic_write_json(folder / PRIOR_META, meta | {"checksums": prior_checksums(folder)})
        return prior
    verify_checksums(folder, meta["checksums"])
    return load_prior(folder, device)


def prior_checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file of a prior directory but its metadata, by relative path."""
    names = sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file() and p.name != PRIOR_META)
    return checksums(folder, names)


def squeeze_prior(
    recipe: PriorRecipe, splits: DataSplits, out: Path, teacher: Callable[[str], Teacher],
    progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"), cache_dir: Optional[Path] = None,
) -> dict[str, Any]:
    """Train, check and save a prior into `out` (atomically); resumes from `out`.partial. Under
    torchrun every rank calls it together (module docstring)."""
    train = splits.train
    world = distributed.current()
    work = distributed.on_main(lambda: open_workdir(out.with_name(out.name + ".partial"), f"prior {recipe.name}"))
    torch.manual_seed(recipe.seed)
    text = TextConditioning.build(recipe, splits) if recipe.text_encoder else None
    dim = text.encoder.dim if text else 0
    model = build_unet(recipe, train.image_shape, train.num_classes, dim).to(device)
    if recipe.init:
        warm_start(model, resolve_prior(recipe.init, splits, teacher, cache_dir, progress, device).model)
    ema = build_unet(recipe, train.image_shape, train.num_classes, dim).to(device)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    scheduler = make_train_scheduler(recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    batches = math.ceil(len(train) / recipe.batch_size)
    total = max(recipe.schedule_epochs, recipe.epochs) * batches
    start_epoch, seconds, devices = _resume(work / RESUME, model, ema, optimizer)
    alphas = scheduler.alphas_cumprod.to(device)
    null = train.num_classes
    curves, every, window = CurveLog(work / CURVES if world.is_main else None, "train"), log_interval(recipe.epochs * batches), []
    curves.resume(start_epoch * batches)
    trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if world.distributed else model
    model.train()
    with steps(progress, f"squeeze prior {recipe.name}", recipe.epochs * batches, unit="step") as bar, curves:
        bar.skip(start_epoch * batches)
        for epoch in range(start_epoch, recipe.epochs):
            started = time.perf_counter()
            devices = list(dict.fromkeys(devices + [device_label(device)]))
            # every random number of an epoch comes from the epoch's own generator: resume-safe
            generator = torch.Generator().manual_seed(item_seed(recipe.seed, "prior-epoch", epoch))
            order = torch.randperm(len(train), generator=generator)
            for b, rows in enumerate(order.split(recipe.batch_size)):
                step = epoch * batches + b
                lr = recipe.lr * min(1.0, (step + 1) / recipe.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / total))
                optimizer.param_groups[0]["lr"] = lr
                # The whole batch's random numbers, on every rank (the generator stays shared); each rank keeps its slice.
                noise = torch.randn((len(rows), *train.image_shape), generator=generator)
                t = torch.randint(0, recipe.train_timesteps, (len(rows),), generator=generator)
                if text is None:
                    condition = train.labels[rows].clone()
                    condition[torch.rand(len(rows), generator=generator) < recipe.class_dropout] = null
                else:
                    condition = text.states(rows, train.labels[rows], recipe, generator)
                part, share = rank_slice(len(rows), world)
                x0 = (train.load(rows[part]) * 2 - 1).to(device)
                noise, t, condition = noise[part].to(device), t[part].to(device), condition[part].to(device)
                a = alphas[t].view(-1, 1, 1, 1)
                noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
                if text is None:
                    predicted = trained(noisy, t, class_labels=condition).sample
                else:
                    predicted = trained(noisy, t, encoder_hidden_states=condition).sample
                loss, batch_loss = weighted_loss(F.mse_loss(predicted, noise), share, world)
                if not torch.isfinite(batch_loss):  # the same number on every rank: they stop together
                    raise DDKitError(f"prior loss became {batch_loss.item()} at epoch {epoch + 1}; lower the lr (now {recipe.lr})")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    decay = min(recipe.ema_decay, (1 + step) / (10 + step))  # short warm-up of the average
                    for e, p in zip(ema.parameters(), model.parameters()):
                        e.lerp_(p, 1 - decay)
                value = batch_loss.item()
                window.append(value)
                if (step + 1) % every == 0:  # each row: the mean loss of the steps since the last one
                    curves.log(step + 1, loss=sum(window) / len(window), lr=lr)
                    window.clear()
                bar.advance(status=f"loss {value:.4f}")
            seconds += time.perf_counter() - started
            if world.is_main:
                _save_resume(work / RESUME, epoch + 1, seconds, devices, model, ema, optimizer)
    prior = Prior(ema.eval(), scheduler, None, null_class=None if text else null, text_encoder=text.encoder if text else None)
    checker = teacher(recipe.check_teacher)
    prompts = class_prompts(load_vocabulary(recipe.vocabulary), train.class_names) if text else None
    metrics = {"train_seconds": round(seconds, 1), "train_devices": devices, "parameters": sum(p.numel() for p in ema.parameters()),
               **teacher_agreement(prior, checker, train.num_classes, train.image_shape, recipe.check_per_class,
                                   recipe.check_sampler, recipe.seed, prompts, spread=True)}
    meta = {"recipe": to_dict(recipe), "data": splits.fingerprint, "class_names": list(train.class_names),
            "image_shape": list(train.image_shape), "check_teacher": checker.label,
            "metrics": metrics, "environment": environment(device)}
    meta |= {"text_encoder": recipe.text_encoder, "text_length": recipe.text_length, "class_prompts": prompts} if text else {"null_class": null}
    return distributed.on_main(lambda: _write_prior(prior, out, meta, work))


def _write_prior(prior: Prior, out: Path, meta: dict[str, Any], work: Path) -> dict[str, Any]:
    save_prior_dir(prior, out, meta, work / CURVES)
    remove_workdir(work)
    return meta["metrics"]


def teacher_agreement(
    prior: Prior, teacher: Teacher, num_classes: int, image_shape: tuple[int, int, int], per_class: int,
    sampler: SamplerConfig, seed: int, prompts: Optional[list[str]] = None, spread: bool = False,
) -> dict[str, Any]:
    """Share of samples (%) the teacher assigns to their conditioning class (its label, or for a
    text prior the class's bare prompt), overall and per class. With `spread`, every rank calls it
    together and samples its round-robin share of the classes (each class has its own seed: the
    numbers are the one-process numbers)."""
    def class_hits(c: int) -> float:
        generator = torch.Generator().manual_seed(item_seed(seed, "prior-check", c))
        cond = (prior.prompt_condition([prompts[c]] * per_class) if prompts
                else Condition(labels=torch.full((per_class,), c, device=prior.device)))
        with torch.no_grad():
            images = prior.decode(sample(prior, cond, generator, sampler), image_shape)
        return (predict_logits(teacher.model, images).argmax(1) == c).float().mean().item() * 100

    def hits_of(classes: list[int]) -> dict[int, float]:
        return {c: class_hits(c) for c in classes}

    every = list(range(num_classes))
    parts = distributed.gather_results(lambda: hits_of(distributed.shard(every))) if spread else [hits_of(every)]
    found = {c: h for part in parts for c, h in part.items()}
    hits = [found[c] for c in every]
    return {"teacher_agreement": round(sum(hits) / len(hits), 2), "teacher_agreement_per_class": [round(h, 1) for h in hits],
            "check_sampler": to_dict(sampler), "check_per_class": per_class}


@dataclass
class TextConditioning:
    """A text prior's training captions, encoded once (see ddkit.diffusion.captions)."""

    encoder: TextEncoder
    table: CaptionTable
    states_table: torch.Tensor  # (captions, length, dim)

    @staticmethod
    def build(recipe: PriorRecipe, splits: DataSplits) -> "TextConditioning":
        train = splits.train
        vocab = load_vocabulary(recipe.vocabulary)
        attributes = load_yaml(preset_path("prompts", recipe.vocabulary)).get("attributes")
        if not attributes:
            raise DDKitError(f"prompt vocabulary {recipe.vocabulary} has no attribute axes to caption images with")
        levels = attribute_levels((images for _, images, _ in train.batches(INFERENCE_BATCH)), train.labels, train.num_classes)
        table = CaptionTable.build(vocab, attributes, train.class_names, glosses_for(vocab, train.class_names), levels)
        encoder = load_text_encoder(recipe.text_encoder, recipe.text_length)
        states = torch.cat([encoder.encode(chunk) for chunk in _chunks(table.texts, 256)])
        return TextConditioning(encoder, table, states)

    def states(self, rows: torch.Tensor, labels: torch.Tensor, recipe: PriorRecipe, generator: torch.Generator) -> torch.Tensor:
        return self.states_table[self.table.index(rows, labels, recipe.caption_keep, recipe.class_dropout, generator)]


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i: i + size] for i in range(0, len(items), size)]


def warm_start(model: torch.nn.Module, source: torch.nn.Module) -> None:
    """Copy every tensor of `source` whose name and shape `model` shares (the rest keep their init)."""
    own = model.state_dict()
    shared = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(shared, strict=False)


def save_prior_dir(prior: Prior, out: Path, meta: dict[str, Any], curves: Optional[Path] = None) -> None:
    """A diffusers pipeline directory (DDPMPipeline layout) + ddkit_prior.json (+ the training
    `curves` folder, if any), written atomically."""
    diffusers = require("diffusers", "saving a diffusion prior")
    with atomic_directory(out, PRIOR_DIR) as tmp:
        if curves is not None and curves.is_dir():
            shutil.copytree(curves, tmp / CURVES)
        prior.model.save_pretrained(tmp / "unet")
        prior.scheduler.save_pretrained(tmp / "scheduler")
        index = {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
                 "unet": ["diffusers", type(prior.model).__name__], "scheduler": ["diffusers", type(prior.scheduler).__name__]}
        (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
        atomic_write_json(tmp / PRIOR_META, meta | {"checksums": prior_checksums(tmp)})


def _save_resume(path: Path, epoch: int, seconds: float, devices: list[str], model, ema, optimizer) -> None:
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "seconds": seconds, "devices": devices, "model": model.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _resume(path: Path, model, ema, optimizer) -> tuple[int, float, list[str]]:
    """(epochs done, training seconds, devices that trained them) of an interrupted run; under
    torchrun rank 0 reads it (and may discard a damaged one) and every rank resumes from that."""
    keys = ("epoch", "seconds", "model", "ema", "optimizer")
    if distributed.current().distributed:
        state = distributed.on_main(lambda: load_resume_point(path, torch.device("cpu"), keys))
    else:
        state = load_resume_point(path, next(model.parameters()).device, keys)
    if state is None:
        return 0, 0.0, []
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), float(state["seconds"]), list(state.get("devices", []))
