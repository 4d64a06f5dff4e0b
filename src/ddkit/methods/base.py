"""The method contract: a typed config, and `synthesize(context) -> DistilledSet`."""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterator, Optional

import torch
from rich.progress import Progress
from torch import nn

from ddkit.config import build, to_dict
from ddkit.curves import CurveLog
from ddkit.data import formation
from ddkit.data.distilled import DistilledSet
from ddkit.data.images import DataSplits, ImageSet
from ddkit.errors import DDKitError
from ddkit.extras import check_extras
from ddkit.models.teachers import Teacher
from ddkit.registry import Registry
from ddkit.runs import environment

if TYPE_CHECKING:  # the diffusion extra is optional: a prior is only a type here
    from ddkit.diffusion.prior import Prior


@dataclass
class SynthesisContext:
    splits: DataSplits  # methods read train (and val to choose); never test
    ipc: int
    seed: int
    teacher: Callable[[str], Teacher]  # loads (or squeezes) a teacher by recipe name
    progress: Optional[Progress] = None
    device: torch.device = torch.device("cpu")  # where optimisation runs; results go back to the CPU
    workdir: Optional[Path] = None  # finished work items of an interrupted run are kept here
    prior: Optional[Callable[[str], Prior]] = None  # loads (or trains) a diffusion prior by source; None: a PriorPool on first use
    curves: CurveLog = field(default_factory=CurveLog)  # each work item's curve is a child of this one (none: not kept)


    def load_prior(self, source: str) -> Prior:
        """The diffusion prior `source`, through the context's prior pool."""
        if self.prior is None:
            from ddkit.diffusion.train import PriorPool  # priors need the diffusion extra: imported only when used

            self.prior = PriorPool(self.splits, self.teacher, None, self.progress, self.device)
        return self.prior(source)


class Method:
    """Base class: subclasses set `config_class` and implement `synthesize`."""

    config_class: ClassVar[type]
    smoke_options: ClassVar[dict[str, Any]] = {}  # the smallest config worth running in the registry-wide test
    extras: ClassVar[tuple[str, ...]] = ()  # optional dependency groups the method needs (ddkit.extras)
    reads_training_images: ClassVar[bool] = True  # False: data-free, runs on a class-list dataset

    def __init__(self, config: Any) -> None:
        self.config = config

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        raise NotImplementedError


METHODS: Registry[type[Method]] = Registry("method")
log = logging.getLogger(__name__)


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    return METHODS.register(name)


def check_method_extras(method: str) -> None:
    """Fail before any work when `method` needs an extra that is not installed."""
    check_extras(METHODS.get(method).extras, f"method {method!r}")


def resolve_config(method: str, options: dict[str, Any]) -> Any:
    return build(METHODS.get(method).config_class, options, where=method)


def synthesize(method: str, options: dict[str, Any], ctx: SynthesisContext) -> DistilledSet:
    """Check its extras, resolve `method` and its options, check the IPC, run it, and stamp the result's metadata."""
    check_method_extras(method)
    config = resolve_config(method, options)
    check_training_images(method, ctx)
    result = METHODS.get(method)(config).synthesize(ctx)
    result.meta.update({"method": method, "config": to_dict(config), "ipc": ctx.ipc, "seed": ctx.seed,
                        "environment": environment(ctx.device)})
    return result


def check_training_images(method: str, ctx: SynthesisContext) -> None:
    """A method that reads training images needs enough of them; a data-free one only a positive IPC."""
    if METHODS.get(method).reads_training_images:
        if len(ctx.splits.train) == 0:
            free = ", ".join(n for n in METHODS.names() if not METHODS.get(n).reads_training_images)
            raise DDKitError(f"method {method!r} reads training images and dataset {ctx.splits.name!r} has none (a class list "
                             f"only); run a data-free method ({free}) on it, or use an image-folder dataset with a train/ split")
        ctx.splits.train.check_ipc(ctx.ipc)
    elif ctx.ipc < 1:
        raise DDKitError(f"IPC {ctx.ipc} is not possible; choose an IPC of at least 1")


def subset_as_distilled(train: ImageSet, indices: torch.Tensor, meta: dict[str, Any], factor: int = 1) -> DistilledSet:
    """The training images at `indices` as a set; with a formation `factor`, each run of factor² of them
    (class-major, so one class's) is shrunk into the tiles of one stored image."""
    tiles = factor * factor
    return DistilledSet(formation.encode(train.load(indices), factor), train.labels[indices][::tiles], train.class_names,
                        train.mean, train.std, meta={"source_indices": indices.tolist(), **meta}, factor=factor)


def real_images_needed(train: ImageSet, ipc: int, factor: int) -> int:
    """Real images per class that `ipc` stored images of formation `factor` hold; refuse what the data cannot give."""
    formation.check_factor(factor, *train.image_shape[1:])
    needed = ipc * factor * factor
    smallest = int(train.class_counts().min())
    if factor > 1 and needed > smallest:
        raise DDKitError(f"IPC {ipc} with formation factor {factor} needs {needed} training images per class and the "
                         f"smallest class has {smallest}; lower the IPC or the factor")
    return needed


def start_images_from_set(path: str, train: ImageSet, count: int, factor: int = 1) -> tuple[list[torch.Tensor], str]:
    """Per class, `count` start images in pixels from the distilled set at `path`, and a digest of the set: a method
    that continues another method's output (PRISM from a DM set, say) starts there. At formation `factor` a start is
    a stored image of f × f tiles: a set of that factor gives its stored images, any other set encodes f² of its
    decoded images into each start."""
    try:
        stored = DistilledSet.load(Path(path))
    except DDKitError as err:
        raise DDKitError(f"init_set: {err}") from None
    distilled = stored.decoded()
    if tuple(distilled.class_names) != tuple(train.class_names) or distilled.images.shape[1:] != train.image_shape:
        raise DDKitError(f"init_set {path} holds {len(distilled.class_names)} classes of {tuple(distilled.images.shape[1:])} images, "
                         f"the data {train.num_classes} of {tuple(train.image_shape)}; start from a set made on this dataset")
    as_stored = stored.factor == factor
    source, needed = (stored, count) if as_stored else (distilled, count * factor**2)
    per_class = [source.images[source.labels == c] for c in range(train.num_classes)]
    short = min(range(train.num_classes), key=lambda c: len(per_class[c]))
    if len(per_class[short]) < needed:
        at_factor = f" at formation factor {factor}" if factor > 1 else ""
        raise DDKitError(f"init_set {path} holds {len(per_class[short])} images of class {train.class_names[short]!r} and IPC {count}"
                         f"{at_factor} starts from {needed}; lower the IPC or start from a set with more images per class")
    digest = hashlib.sha256(distilled.images.numpy().tobytes() + distilled.labels.numpy().tobytes()).hexdigest()[:16]
    if as_stored:
        return [images[:count] for images in per_class], digest
    return [formation.encode(images[:needed], factor) for images in per_class], digest


def step_in_box(optimizer: torch.optim.Optimizer, loss: torch.Tensor, x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> None:
    """One optimiser step on the images `x`, then back into [low, high] so that they stay valid pixels."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        torch.maximum(torch.minimum(x, high, out=x), low, out=x)


@contextmanager
def frozen(models: list[nn.Module]) -> Iterator[None]:
    """Eval mode and no parameter gradients while images are optimised through `models` (the gradients
    are not needed and cost a backward pass each); requires_grad comes back afterwards."""
    states = [[p.requires_grad for p in m.parameters()] for m in models]
    for m in models:
        m.eval().requires_grad_(False)
    try:
        yield
    finally:
        for m, state in zip(models, states):
            for p, flag in zip(m.parameters(), state):
                p.requires_grad_(flag)
