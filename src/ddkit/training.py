"""One supervised training loop, shared by teachers (squeeze) and evaluation students.

Every random choice (batch order, augmentation) draws from one generator seeded by the caller,
and the model is built from the same seed, so a (recipe, data, seed) triple gives the same
weights on the same machine. With `checkpoint`, state is saved atomically after each epoch and
an interrupted fit resumes from the last finished epoch.

Under torchrun, `fit(..., ddp=True)` trains one model over all ranks with DistributedDataParallel
(every rank calls it together). The seeded generator, identical on every rank, still draws the
global batch order; each rank reads and augments only its contiguous slice of each global batch,
and its loss is weighted by its share of the batch, so DDP's gradient average is the gradient of
the batch's mean loss, as in one process. Augmentation cannot be drawn for a whole batch without
reading it, so under DDP each rank augments its slice from a generator seeded by (fit's seed,
epoch, batch, rank), and the shared generator draws the batch order alone. The randomness is as
reproducible as in one process for a given world size (and resumes exactly), but it is not the
one-process draw: with augmentation the augmented images differ and, since one process also draws
them from the shared generator, the later epochs' orders too; batch norm normalises over each
rank's slice (as in any DDP run without SyncBatchNorm). A DDP run therefore agrees with a
one-process run within a tolerance, not bit for bit (without augmentation or batch norm: up to
float summation order). With one process `ddp=True` changes nothing. Only rank 0 writes
checkpoints and curves; every rank resumes from rank 0's checkpoint, which holds only
world-independent state (weights, optimiser, the shared generator), so a run may resume with
another world size.
"""

from __future__ import annotations

import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ddkit import distributed
from ddkit.config import ADDED_OPTION
from ddkit.curves import CurveLog
from ddkit.data.augment import AUGMENTATIONS
from ddkit.data.images import ImageSet
from ddkit.devices import module_device
from ddkit.errors import DDKitError
from ddkit.progress import steps
from ddkit.runs import atomic_write_bytes
from ddkit.seeds import item_seed

log = logging.getLogger(__name__)
INFERENCE_BATCH = 1000  # images per forward pass when only predicting: memory, not results, depends on it


Mix = tuple[torch.Tensor, float]  # (partner position of each row in the batch, λ: the row's own share)


class Batch(NamedTuple):
    x: torch.Tensor  # the augmented images the model saw
    index: torch.Tensor  # their positions in the training set
    epoch: int
    mix: Optional[Mix] = None  # CutMix: row i holds (1 − λ) of row partner[i]; None: no mixing in this batch


LossFn = Callable[[torch.Tensor, Batch], torch.Tensor]  # (logits, batch) -> loss


def mixed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy on the batch's labels; under CutMix λ·CE(own) + (1 − λ)·CE(partner's), as IDC / CutMix."""
    own = labels[batch.index]
    loss = F.cross_entropy(logits, own, label_smoothing=label_smoothing)
    if batch.mix is None:
        return loss
    partner, lam = batch.mix
    return lam * loss + (1 - lam) * F.cross_entropy(logits, own[partner.to(own.device)], label_smoothing=label_smoothing)


@dataclass(frozen=True)
class TrainRecipe:
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["step-half", "cosine", "onecycle", "constant", "multistep"] = "step-half"  # multistep: IDC's ×0.2 at 2/3 and 5/6
    epochs: int = 300
    # IDC's epoch table (argument.py ipc_epoch): a set of k images per class trains for the epochs of
    # the smallest key >= k; a larger set for `epochs`
    epochs_by_ipc: dict[int, int] = field(default_factory=dict, metadata=ADDED_OPTION)
    steps: int = field(default=0, metadata=ADDED_OPTION)  # > 0: this many optimiser steps (whole epochs, rounded up), any set size
    batch_size: int = 256
    augmentation: str = "dsa"
    label_smoothing: float = 0.0
    channels_last: bool = False
    mix: Literal["none", "cutmix"] = field(default="none", metadata=ADDED_OPTION)  # CutMix after augmentation (IDC, SRe2L, PRISM)
    mix_prob: float = field(default=1.0, metadata=ADDED_OPTION)  # share of batches that are mixed
    mix_beta: float = field(default=1.0, metadata=ADDED_OPTION)  # λ ~ Beta(β, β)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and lr must be positive")
        if not 0 <= self.mix_prob <= 1 or self.mix_beta <= 0:
            raise ValueError("mix_prob must lie in [0, 1] and mix_beta be positive")
        if any(k < 1 or v < 1 for k, v in self.epochs_by_ipc.items()):
            raise ValueError("epochs_by_ipc maps images per class (at least 1) to epochs (at least 1)")
        AUGMENTATIONS.get(self.augmentation)

    def epochs_for(self, images: int, classes: int = 1) -> int:
        """Epochs over a set of `images` in `classes` classes: enough whole epochs for `steps` steps,
        the `epochs_by_ipc` entry for its images per class, or `epochs`."""
        if self.steps:
            return math.ceil(self.steps / math.ceil(images / self.batch_size))
        ipc = math.ceil(images / classes)
        return next((self.epochs_by_ipc[k] for k in sorted(self.epochs_by_ipc) if ipc <= k), self.epochs)


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
    if schedule == "multistep":  # IDC: ×0.2 at 2/3 and again at 5/6 of training
        return 1.0 if progress < 2 / 3 else 0.2 if progress < 5 / 6 else 0.04
    if schedule == "onecycle":  # linear warm-up over 15 %, then linear decay to zero
        warm = 0.15
        return progress / warm if progress < warm else max(0.0, (1 - progress) / (1 - warm))
    return 1.0


def hard_label_loss(labels: torch.Tensor, label_smoothing: float = 0.0) -> LossFn:
    return lambda logits, batch: mixed_cross_entropy(logits, labels, batch, label_smoothing)


def epoch_batches(
    data: ImageSet, recipe: TrainRecipe, generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, Optional[Mix]]]:
    """One epoch of (indices, augmented CPU images, their CutMix), drawn from `generator` in a fixed
    order, so anything that replays the same generator (stored soft labels) sees the same batches."""
    augment = AUGMENTATIONS.get(recipe.augmentation)
    order = torch.randperm(len(data), generator=generator)
    for index in order.split(recipe.batch_size):
        x, mix = mix_batch(augment(data.load(index), (data.mean, data.std), generator), recipe, generator)
        yield index, x, mix


def mix_batch(x: torch.Tensor, recipe: TrainRecipe, generator: torch.Generator) -> tuple[torch.Tensor, Optional[Mix]]:
    if recipe.mix == "none" or len(x) < 2:
        return x, None
    return cutmix(x, generator, recipe.mix_prob, recipe.mix_beta)


def rank_batches(
    data: ImageSet, recipe: TrainRecipe, generator: torch.Generator, world: distributed.World, epoch_seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float, Optional[Mix]]]:
    """One epoch under DDP: (this rank's indices, their augmented images, their share of the global
    batch). Every rank draws the same order from the shared `generator`, which nothing else draws
    from, so the ranks stay in step (and the order is the one-process order when that does not
    augment); a rank reads only its own slice and augments it from (`epoch_seed`, batch, rank)."""
    augment = AUGMENTATIONS.get(recipe.augmentation)
    order = torch.randperm(len(data), generator=generator)
    for b, index in enumerate(order.split(recipe.batch_size)):
        part, share = rank_slice(len(index), world)
        mine = index[part]
        rank_generator = torch.Generator().manual_seed(item_seed(epoch_seed, b, world.rank))
        x, mix = mix_batch(augment(data.load(mine), (data.mean, data.std), rank_generator), recipe, rank_generator)
        yield mine, x, share, mix


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
    ddp: bool = False,
) -> nn.Module:
    """Train `model` in place on the device it lives on; augmentation runs on the CPU (seeded generator).
    Each epoch's mean loss and final learning rate go to `curves` (step = epochs done). With `ddp`,
    every rank of a torchrun world calls this together and they train one model (module docstring)."""
    world = distributed.current() if ddp else distributed.World()
    device = module_device(model)
    labels = data.labels.to(device)
    loss_fn = loss_fn or hard_label_loss(labels, recipe.label_smoothing)
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, recipe)
    generator = torch.Generator().manual_seed(seed)
    batches_per_epoch = math.ceil(len(data) / recipe.batch_size)
    epochs = recipe.epochs_for(len(data), data.num_classes)
    total = batches_per_epoch * epochs
    start_epoch = _resume(checkpoint, model, optimizer, generator, world) if checkpoint else 0
    curves = curves if curves and world.is_main else CurveLog()
    curves.resume(start_epoch)
    trained = _ddp(model, device) if world.distributed else model

    model.train()
    with steps(progress, description, epochs, unit="epoch") as bar, curves:
        bar.skip(start_epoch)
        for epoch in range(start_epoch, epochs):
            running = 0.0
            for i, (index, x, share, mix) in enumerate(_batches(data, recipe, generator, world, item_seed(seed, "augment", epoch))):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr * lr_factor(recipe.schedule, epoch * batches_per_epoch + i, total)
                x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format)
                loss, batch_loss = weighted_loss(loss_fn(trained(x), Batch(x, index.to(device), epoch, mix)), share, world)
                if not torch.isfinite(batch_loss):  # the same number on every rank: they stop together
                    raise DDKitError(f"{description}: loss became {batch_loss.item()} at epoch {epoch + 1}; lower the learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                running += batch_loss.item()
            epoch_loss = running / batches_per_epoch
            # the row before the checkpoint: a resume may redo a logged epoch, never skip one
            curves.log(epoch + 1, loss=epoch_loss, lr=optimizer.param_groups[0]["lr"])
            if checkpoint and world.is_main:
                _save_state(checkpoint, epoch + 1, model, optimizer, generator)
            bar.advance(status=f"loss {epoch_loss:.3f}")
    if world.distributed:
        distributed.sync_from_main(model)
    model.to(memory_format=torch.contiguous_format)  # inference on a fresh or reloaded copy must match
    model.eval()
    return model


def cutmix(x: torch.Tensor, generator: torch.Generator, prob: float, beta: float) -> tuple[torch.Tensor, Optional[Mix]]:
    """With probability `prob`, paste a box of each row's partner (a seeded permutation) into it; the
    box covers 1 − λ of the image with λ ~ Beta(β, β), λ then set to the exact uncovered share."""
    if float(torch.rand((), generator=generator)) >= prob:
        return x, None
    draw = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    lam = float(draw.beta(beta, beta))
    partner = torch.randperm(len(x), generator=generator)
    h, w = x.shape[-2:]
    cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(h, (1,), generator=generator)), int(torch.randint(w, (1,), generator=generator))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[partner][..., top:bottom, left:right]
    return mixed, (partner, 1 - (bottom - top) * (right - left) / (h * w))


def rank_slice(batch: int, world: distributed.World) -> tuple[slice, float]:
    """This rank's contiguous part of a global batch of `batch` items (as positions) and its share
    of the batch. A rank left without items (a last batch smaller than the world) gets the first
    one with share 0: DDP still needs its (zero) gradient."""
    if not world.distributed:
        return slice(None), 1.0
    base, extra = divmod(batch, world.size)
    start = world.rank * base + min(world.rank, extra)
    stop = start + base + (world.rank < extra)
    return (slice(start, stop), (stop - start) / batch) if stop > start else (slice(0, 1), 0.0)


def _batches(
    data: ImageSet, recipe: TrainRecipe, generator: torch.Generator, world: distributed.World, epoch_seed: int,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, float, Optional[Mix]]]:
    """(indices, augmented images, share of the global batch) for this rank, one epoch."""
    if world.distributed:
        return rank_batches(data, recipe, generator, world, epoch_seed)
    return ((index, x, 1.0, mix) for index, x, mix in epoch_batches(data, recipe, generator))


def _ddp(model: nn.Module, device: torch.device) -> nn.Module:
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def weighted_loss(loss: torch.Tensor, share: float, world: distributed.World) -> tuple[torch.Tensor, torch.Tensor]:
    """(what this rank back-propagates, the global batch's mean loss). DDP averages gradients over
    the ranks, so each rank's mean loss is weighted by share × size: the average is then the
    gradient of the whole batch's mean loss, even when the slices differ in size."""
    if not world.distributed:
        return loss, loss.detach()
    return loss * (share * world.size), distributed.all_reduce_sum(loss.detach() * share)


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = INFERENCE_BATCH) -> torch.Tensor:
    """Logits on the CPU, computed in chunks on the model's device."""
    model.eval()
    device = module_device(model)
    return torch.cat([model(chunk.to(device)).cpu() for chunk in images.split(batch_size)])


def accuracy(model: nn.Module, data: ImageSet, batch_size: int = INFERENCE_BATCH, spread: bool = False) -> float:
    """Top-1 accuracy (%) on `data`, read chunk by chunk. With `spread`, every rank calls it
    together and scores its round-robin share of the chunks; the predictions are gathered in
    order, so the number is the one-process number, bit for bit."""
    chunks = list(enumerate(torch.arange(len(data)).split(batch_size)))
    mine = distributed.shard(chunks) if spread else chunks
    predicted = {i: predict_logits(model, data.load(index), batch_size).argmax(1) for i, index in mine}
    if spread:
        predicted = {i: p for part in distributed.gather(predicted) for i, p in part.items()}
    predictions = torch.cat([predicted[i] for i, _ in chunks])
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


def _resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator, world: distributed.World,
) -> int:
    keys = ("epoch", "model", "optimizer", "generator")
    if world.distributed:  # rank 0 reads (and may discard a damaged file); every rank resumes from what it read
        state = distributed.on_main(lambda: load_resume_point(path, torch.device("cpu"), keys))
    else:
        state = load_resume_point(path, module_device(model), keys)
    if state is None:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"].cpu())
    return int(state["epoch"])
