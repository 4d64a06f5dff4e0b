"""One supervised training loop, shared by teachers (squeeze) and evaluation students.

Every random choice (batch order, augmentation) draws from one generator seeded by the caller,
and the model is built from the same seed, so a (recipe, data, seed) triple gives the same
weights on the same machine. With `checkpoint`, state is saved atomically after each epoch and
an interrupted fit resumes from the last finished epoch.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple, Optional

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from ddkit.config import ADDED_OPTION
from ddkit.curves import CurveLog
from ddkit.data.augment import AUGMENTATIONS
from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.errors import DDKitError
from ddkit.progress import steps
from ddkit.runs import atomic_write_bytes

log = logging.getLogger(__name__)
INFERENCE_BATCH = 1000  # images per forward pass when only predicting: memory, not results, depends on it


class Batch(NamedTuple):
    x: torch.Tensor  # the augmented images the model saw
    index: torch.Tensor  # their positions in the training set
    epoch: int


LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits, batch) -> loss


@dataclass(frozen=True)
class TrainRecipe:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["step-half", "cosine", "onecycle", "constant"] = "step-half"
    epochs: int = 300
    steps: int = field(default=0, metadata=ADDED_OPTION)  # > 0: this many optimiser steps (whole epochs, rounded up), any set size
    batch_size: int = 256
    augmentation: str = "dsa"
    label_smoothing: float = 0.0
    channels_last: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        AUGMENTATIONS.get(self.augmentation)

    def epochs_for(self, images: int) -> int:
        """Epochs over a set of `images`: `epochs`, or enough whole epochs for `steps` steps."""
        return math.ceil(self.steps / math.ceil(images / self.batch_size)) if self.steps else self.epochs


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)


def lr_factor(schedule: str, step: int, total: int) -> float:
    """Learning-rate multiplier at optimisation step `step` of `total`."""
    progress = step / max(1, total)
    if schedule == "step-half":  # DC/DSA: ×0.1 once half of the epochs are done
        return 1.0 if progress < 0.5 else 0.1
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "onecycle":  # linear warm-up over 15 %, then linear decay to zero
        warm = 0.15
        return progress / warm if progress < warm else max(0.0, (1 - progress) / (1 - warm))
    return 1.0


def hard_label_loss(labels: torch.Tensor, label_smoothing: float = 0.0) -> LossFn:
    return lambda logits, batch: F.cross_entropy(logits, labels[batch.index], label_smoothing=label_smoothing)


def epoch_batches(data: ImageSet, recipe: TrainRecipe, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (indices, augmented CPU images), drawn from `generator` in a fixed order, so
    anything that replays the same generator (stored soft labels) sees exactly the same batches."""
    augment = AUGMENTATIONS.get(recipe.augmentation)
    order = torch.randperm(len(data), generator=generator)
    for index in order.split(recipe.batch_size):
        yield index, augment(data.load(index), (data.mean, data.std), generator)


def fit(
    model: nn.Module,
    data: ImageSet,
    recipe: TrainRecipe,
    seed: int,
    loss_fn: Optional[LossFn] = None,
    progress: Optional[Progress] = None,
    description: str = "train",
    checkpoint: Optional[Path] = None,
    curves: Optional[CurveLog] = None,
) -> nn.Module:
    """Train `model` in place on the device it lives on; augmentation runs on the CPU (seeded generator).
    Each epoch's mean loss and final learning rate go to `curves` (step = epochs done)."""
    device = module_device(model)
    labels = data.labels.to(device)
    loss_fn = loss_fn or hard_label_loss(labels, recipe.label_smoothing)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    batches_per_epoch = math.ceil(len(data) / recipe.batch_size)
    epochs = recipe.epochs_for(len(data))
    total = batches_per_epoch * epochs
    start_epoch = _resume(checkpoint, model, optimizer, generator) if checkpoint else 0
    curves = curves or CurveLog()
    curves.resume(start_epoch)

    model.train()
    with steps(progress, description, epochs, unit="epoch") as bar, curves:
        bar.skip(start_epoch)
        for epoch in range(start_epoch, epochs):
            running = 0.0
            for i, (index, x) in enumerate(epoch_batches(data, recipe, generator)):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr * lr_factor(recipe.schedule, epoch * batches_per_epoch + i, total)
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                loss = loss_fn(model(x), Batch(x, index.to(device), epoch))
                if not torch.isfinite(loss):
                    raise DDKitError(f"{description}: loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += loss.item()
            epoch_loss = running / batches_per_epoch
            # the row before the checkpoint: a resume may redo a logged epoch, never skip one
            curves.log(epoch + 1, loss=epoch_loss, lr=optimizer.param_groups[0]["lr"])
            if checkpoint:
                _save_state(checkpoint, epoch + 1, model, optimizer, generator)
            bar.advance(status=f"loss {epoch_loss:.3f}")
    model.to(memory_format=torch.contiguous_format)  # inference on a fresh or reloaded copy must match
    model.eval()
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Logits on the CPU, computed in chunks on the model's device."""
    model.eval()
    device = module_device(model)
    return torch.cat([model(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, data: ImageSet, batch_size: int = INFERENCE_BATCH) -> float:
    predictions = torch.cat([predict_logits(model, images, batch_size).argmax(1) for _, images, _ in data.batches(batch_size)])
    return float((predictions == data.labels).float().mean()) * 100


def _save_state(path: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> None:
    buffer = io.BytesIO()
    torch.save(
        {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state()},
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_resume_point(path: Path, device: torch.device, keys: tuple[str, ...]) -> Optional[dict]:
    """The state saved at `path`, or None when there is none. An unreadable one (truncated by a full
    disk, written by another version) only costs the epochs it held: it is reported, removed, and
    training starts afresh, so it can never fail every later run."""
    if not Path(path).is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        missing = [key for key in keys if key not in state]
        if missing:
            raise KeyError(f"no {missing[0]!r}")
    except Exception as err:  # torch.load raises many types for a damaged file; each means the same here
        log.warning("resume point %s is unreadable (%s: %s); starting afresh", path, type(err).__name__, str(err)[:80])
        Path(path).unlink(missing_ok=True)
        return None
    return state


def _resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> int:
    state = load_resume_point(path, module_device(model), ("epoch", "model", "optimizer", "generator"))
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"].cpu())
    return int(state["epoch"])
