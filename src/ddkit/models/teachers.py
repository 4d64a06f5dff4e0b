"""Teachers: train ("squeeze") a classifier once, cache it on disk, load it safely afterwards.

A teacher is named by a recipe in `presets/teachers/<name>.yaml` (architecture + training
recipe + seed). Its cache entry is keyed by the training data's content hash and the resolved
recipe, so changing either trains a new teacher and a second run reuses the first.

Under torchrun every rank calls `load_or_squeeze` together. Rank 0 alone checks (and repairs) the
cache entry and holds its lock; a missing teacher is trained by all ranks at once under DDP
(`training.fit(ddp=True)`), rank 0 alone writes its per-epoch checkpoints and the final files,
and then every rank loads what rank 0 wrote. A checkpoint holds no per-rank state, so an
interrupted squeeze resumes with the same or another number of processes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

import torch
from rich.progress import Progress

from ddkit import distributed
from ddkit.config import build, hash_dict, load_yaml, merge, to_dict
from ddkit.curves import CurveLog
from ddkit.data.images import DataSplits
from ddkit.errors import DDKitError
from ddkit.locks import exclusive
from ddkit.models import Classifier, ModelSpec, build_model
from ddkit.models.checkpoint import load_weights, save_weights
from ddkit.models.ensemble import EnsembleModel
from ddkit.presets import preset_names, preset_path
from ddkit.runs import atomic_write_json, checksums, config_hash, default_cache_dir, environment, read_json, verify_checksums
from ddkit.training import TrainRecipe, accuracy, fit

WEIGHTS, MANIFEST, RESUME, CURVES = "model.safetensors", "manifest.json", "resume.pt", "curves"
DEFAULT_PANEL = ("convnet-bn", "resnet", "mobilenet")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TeacherConfig:
    name: str
    arch: ModelSpec
    train: TrainRecipe = field(default_factory=TrainRecipe)
    seed: int = 0
    weights: Optional[str] = None  # use these weights instead of training (file or dir)

    @property
    def pretrained(self) -> bool:
        """Weights given (here, or the architecture's own: a file, a dir or `hub`): never squeezed."""
        return bool(self.weights or self.arch.weights)


@dataclass
class Teacher:
    config: TeacherConfig
    model: Classifier
    info: dict[str, Any]
    # Penultimate features of image tensors already embedded, keyed by the tensor's identity:
    # several methods (and IPCs) of one run read the same training-set features.
    feature_cache: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """Recipe name plus cache hash (or the weights' source): names the exact teacher used."""
        return self.info.get("key") or f"{self.config.name}@{self.config.weights}"


def teacher_config(name: str, overrides: Optional[dict[str, Any]] = None) -> TeacherConfig:
    """A shipped recipe by name, or the user's own YAML file (e.g. a timm model with its weights)."""
    if name.endswith((".yaml", ".yml")):
        path = Path(name)
        if not path.is_file():
            raise DDKitError(f"teacher file {name} does not exist")
        name = path.stem
    elif name in preset_names("teachers"):
        path = preset_path("teachers", name)
    else:
        raise DDKitError(f"unknown teacher {name!r}; choose one of: {', '.join(preset_names('teachers'))}, or a .yaml file")
    data = merge(load_yaml(path), overrides or {})
    try:
        return build(TeacherConfig, {"name": name, **data})
    except DDKitError as err:
        raise DDKitError(f"teacher {name}: {err}") from None


def cache_entry(config: TeacherConfig, splits: DataSplits, cache_dir: Path) -> Path:
    key = config_hash({"data": splits.fingerprint, "teacher": hash_dict(config), "format": 1})
    return Path(cache_dir) / "teachers" / splits.name / f"{config.name}-{key}"


def load_or_squeeze(
    config: TeacherConfig, splits: DataSplits, cache_dir: Optional[Path] = None, progress: Optional[Progress] = None,
    device: torch.device = torch.device("cpu"),
) -> Teacher:
    """Return the cached teacher for (config, data) on `device`, training and caching it first if needed.

    One process squeezes a given teacher at a time (the others wait, then load it); a cache entry
    whose weights fail their checksum or do not load is reported and squeezed again.
    """
    train = splits.train
    arch = replace(config.arch, weights=None) if config.weights else config.arch  # a weight file wins over `hub`
    model = build_model(arch, train.num_classes, train.image_shape, train.mean, train.std, seed=config.seed)
    if config.pretrained:
        source = config.weights or config.arch.weights
        log.info("teacher %s: pretrained weights from %s", config.name, source)
        if config.weights:
            load_weights(model, Path(config.weights))
        return Teacher(config, model.to(device).eval(), {"source": source})
    if len(train) == 0:
        raise DDKitError(f"teacher {config.name} would be trained, but dataset {splits.name!r} has no training images; "
                         "give a pretrained teacher (weights: FILE or hub, or --teacher_weights)")
    entry = cache_entry(config, splits, cache_dir or default_cache_dir())
    # Rank 0 alone checks the entry (it may remove a damaged one); the other ranks load what it verified.
    metrics = distributed.on_main(lambda: _load_cached(model, entry))
    if metrics is None:
        with distributed.main_holds(exclusive(entry, f"teacher {config.name} ({entry})")):
            metrics = distributed.on_main(lambda: _load_cached(model, entry)) or _squeeze(model, config, splits, entry, progress, device)
    else:
        log.info("teacher %s: reusing the cached one in %s", config.name, entry)
    if not distributed.is_main():
        load_weights(model, entry / WEIGHTS)
    return Teacher(config, model.to(device).eval(), metrics | {"key": entry.name, "path": str(entry)})


def _load_cached(model: Classifier, entry: Path) -> Optional[dict[str, Any]]:
    """Load a finished cache entry into `model` and return its metrics; None if there is none or it is damaged."""
    if not (entry / MANIFEST).exists():
        return None
    try:
        manifest = read_json(entry / MANIFEST)
        if "checksums" in manifest:
            verify_checksums(entry, manifest["checksums"])
        load_weights(model, entry / WEIGHTS)
    except DDKitError as err:
        log.warning("cached teacher %s is damaged (%s); squeezing it again", entry, err)
        # Only the entry's own two files go: a half-trusted teacher must never be loaded again.
        (entry / MANIFEST).unlink(missing_ok=True)
        (entry / WEIGHTS).unlink(missing_ok=True)
        return None
    if "checksums" not in manifest:  # written before checksums existed: it loaded, so record them now
        atomic_write_json(entry / MANIFEST, manifest | {"checksums": checksums(entry, [WEIGHTS])})
    return manifest["metrics"]


def _squeeze(
    model: Classifier, config: TeacherConfig, splits: DataSplits, entry: Path, progress: Optional[Progress],
    device: torch.device,
) -> dict[str, Any]:
    """Train the teacher (every rank together under torchrun) and write its entry (rank 0); its metrics."""
    log.info("teacher %s: not cached yet; training it into %s", config.name, entry)
    entry.mkdir(parents=True, exist_ok=True)
    model.to(device)
    started = time.perf_counter()
    fit(model, splits.train, config.train, seed=config.seed, progress=progress, description=f"squeeze {config.name}",
        checkpoint=entry / RESUME, curves=CurveLog(entry / CURVES, "train"), ddp=True)
    seconds = time.perf_counter() - started
    metrics = {
        "train_seconds": round(seconds, 1),
        "val_accuracy": round(accuracy(model, splits.val, spread=True), 2),
        "test_accuracy": round(accuracy(model, splits.test, spread=True), 2),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    return distributed.on_main(lambda: _write_entry(model, config, splits, entry, metrics, device))


def _write_entry(
    model: Classifier, config: TeacherConfig, splits: DataSplits, entry: Path, metrics: dict[str, Any], device: torch.device,
) -> dict[str, Any]:
    save_weights(model, entry / WEIGHTS, metadata={"teacher": config.name, "data": splits.fingerprint})
    atomic_write_json(
        entry / MANIFEST,
        {"config": to_dict(config), "data": splits.fingerprint, "metrics": metrics,
         "checksums": checksums(entry, [WEIGHTS]), "environment": environment(device)},
    )
    (entry / RESUME).unlink(missing_ok=True)
    return metrics


class TeacherPool:
    """Loads each named teacher once per process (squeezing it into the cache if needed)."""

    def __init__(
        self, splits: DataSplits, cache_dir: Optional[Path] = None, progress: Optional[Progress] = None,
        device: torch.device = torch.device("cpu"), weights: Optional[dict[str, str]] = None,
    ) -> None:
        self.splits, self.cache_dir, self.progress = splits, cache_dir or default_cache_dir(), progress
        self.device = device
        # A run's weight files for pretrained recipes (e.g. tv-resnet18: ~/weights/resnet18.pth). Command-line
        # overrides turn "-" into "_" in keys, so names match either way.
        self.weights = {_loose(name): path for name, path in (weights or {}).items()}
        self._loaded: dict[str, Teacher] = {}

    def __call__(self, name: str) -> Teacher:
        """A teacher by recipe name or YAML file; "a+b+c" is the rescaled ensemble of a, b and c."""
        if name not in self._loaded:
            if "+" in name:
                members = [self(member) for member in name.split("+")]
                model = EnsembleModel([m.model for m in members]).eval()
                info = {"key": "+".join(m.label for m in members)}
                self._loaded[name] = Teacher(replace(members[0].config, name=name), model, info)
            else:
                weights = self.weights.get(_loose(name))
                config = teacher_config(name, {"weights": weights} if weights else None)
                self._loaded[name] = load_or_squeeze(config, self.splits, self.cache_dir, self.progress, self.device)
        return self._loaded[name]


def _loose(name: str) -> str:
    return name.replace("_", "-")
