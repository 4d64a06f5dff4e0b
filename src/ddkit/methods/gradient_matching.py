"""Gradient matching: DC (Zhao, Mopuri & Bilen, "Dataset Condensation with Gradient Matching",
ICLR 2021) and, with its default siamese augmentation, DSA (Zhao & Bilen, "Dataset Condensation with
Differentiable Siamese Augmentation", ICML 2021); reference code VICO-UoE/DatasetCondensation, main.py.

Each iteration draws a freshly initialised network and alternates `outer_loop` times between
(a) one step on the synthetic images that makes, class by class, the gradient of the network's loss
on them point where the gradient on a batch of real images of the class points, and (b)
`inner_loop` epochs of training the network on the synthetic set, so that later steps match
gradients along the trajectory the set itself induces.

| paper / main.py                                  | here                                         |
|--------------------------------------------------|----------------------------------------------|
| Σ_layers Σ_out (1 − cos(∇_real, ∇_syn)) 'ours'   | `gradient_distance`                          |
| Iteration, outer_loop / inner_loop by IPC        | `iterations`, `outer_loop`, `inner_loop`     |
| lr_img 0.1, momentum 0.5, lr_net 0.01, batch 256 | `lr`, `momentum`, `network_lr`, `real_batch` |
| DiffAugment siamese (one draw for a class's real | `augmentation: dsa`; the inner-loop training |
| and synthetic images), per-batch when training   | draws per image, as DSA's epoch()            |

What differs from main.py, and why:
- the images stay valid pixels: clamped to [0, 1] after each step (main.py leaves them unbounded in
  normalised space), so the set can be saved as images.
- IPCs outside main.py's table (1, 10, 20, 30, 40, 50) take the entry of the largest IPC below them.
- no BatchNorm special-casing: main.py's ConvNet uses instance norm, as this default does; a BatchNorm
  `network` here normalises each class's batch on its own.
- `factor: f` (multi-formation, ddkit.data.formation) stores f² low-resolution tiles per image and
  matches the gradients of their decoded copies; with `real_batches: n` the network trains between
  matching steps on n augmented batches of real images instead of on the set. Both together are IDC
  (Kim et al., "Dataset Condensation via Efficient Synthetic-Data Parameterization", ICML 2022;
  reference code snu-mllab/Efficient-Dataset-Condensation, condense.py: 500 real images per gap, so
  the matched network follows a real-data trajectory rather than the set's own). IDC's l1 distance
  and cutmix on the network's data are not taken: DSA's distance and augmentation stay.

The classes are coupled (one network, trained between steps on the whole set or on real batches),
so the whole set is one work item; it keeps a resume checkpoint every `checkpoint_every` iterations in the work folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ddkit.config import ADDED_OPTION, hash_dict
from ddkit.curves import log_interval
from ddkit.data import formation
from ddkit.data.augment import dsa, dsa_siamese
from ddkit.data.distilled import DistilledSet
from ddkit.errors import DDKitError
from ddkit.methods.base import Method, SynthesisContext, real_images_needed, register_method, step_in_box
from ddkit.methods.distribution_matching import CPU_CHUNK, fresh_network, rows_of, start_images
from ddkit.methods.herding import herding_picks
from ddkit.methods.runner import run_items
from ddkit.models.classifier import parse_model_spec
from ddkit.progress import steps
from ddkit.runs import atomic_write_tensors, config_hash, read_tensors
from ddkit.seeds import item_seed

# main.py's get_loops: IPC -> (outer_loop, inner_loop)
REFERENCE_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}


@dataclass(frozen=True)
class GMConfig:
    iterations: int = 1000  # networks drawn, each matched outer_loop times (main.py: 1,000)
    lr: float = 0.1  # SGD step on images in normalised units, (x − mean) / std, as main.py's lr_img
    momentum: float = 0.5  # SGD momentum on the images (main.py: 0.5)
    network_lr: float = 0.01  # plain SGD on the network between matching steps (main.py's lr_net)
    real_batch: int = 256  # real images per class and matching step
    train_batch: int = 256  # synthetic images per network update in the inner loop (main.py's batch_train)
    outer_loop: int = 0  # matching steps per network; 0: main.py's value for the IPC (10 at IPC 10)
    inner_loop: int = 0  # network epochs on the synthetic set between matching steps; 0: main.py's (50 at IPC 10)
    init: Literal["real", "noise", "herding", "kernel-herding"] = "real"  # start from random real images of the class, noise, or a herding coreset
    init_teacher: str = "convnet-bn"  # herding inits: the teacher whose features are herded
    network: str = "convnet(width=128,depth=3,norm=instance)"  # the matched net, re-initialised each iteration
    augmentation: Literal["dsa", "none"] = "dsa"  # dsa: DSA's siamese augmentation; none: plain DC
    checkpoint_every: int = 10  # iterations between resume checkpoints in the work folder
    factor: int = field(default=1, metadata=ADDED_OPTION)  # multi-formation (IDC): each stored image holds factor² tiles, matched decoded
    real_batches: int = field(default=0, metadata=ADDED_OPTION)  # >0: between matching steps, this many real batches train the network (IDC)

    def __post_init__(self) -> None:
        for name in ("iterations", "lr", "network_lr", "real_batch", "train_batch", "checkpoint_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.momentum < 1 or min(self.outer_loop, self.inner_loop, self.real_batches) < 0:
            raise ValueError("momentum must lie in [0, 1) and outer_loop / inner_loop / real_batches must not be negative")

    def loops(self, ipc: int) -> tuple[int, int]:
        outer, inner = REFERENCE_LOOPS[max(k for k in REFERENCE_LOOPS if k <= ipc)]
        return self.outer_loop or outer, self.inner_loop or inner


@dataclass(frozen=True)
class WholeSet:
    key: str = "item-all-classes"


def gradient_distance(real: list[torch.Tensor], synthetic: list[torch.Tensor]) -> torch.Tensor:
    """main.py's 'ours' distance: Σ over weight tensors and their output units of 1 − cos(real, synthetic).

    Biases and norm parameters (1-D) take no part, as in the reference."""
    total = real[0].new_zeros(())
    for r, s in zip(real, synthetic):
        if r.dim() == 1:
            continue
        r, s = r.flatten(1), s.flatten(1)
        total = total + (1 - (r * s).sum(-1) / (r.norm(dim=-1) * s.norm(dim=-1) + 1e-6)).sum()
    return total


def mean_loss_gradient(network: nn.Module, parameters: list[torch.Tensor], images: torch.Tensor, label: int,
                       chunk: int) -> list[torch.Tensor]:
    """∇ of the mean cross-entropy of `images` (all of class `label`), summed over chunks of `chunk` images.

    The same gradient as one pass when the network normalises each image on its own; on a CPU, chunks
    that keep their activations in cache take 10 % less time (one thread, ConvNet-3 width 128, 256 images)."""
    total: list[torch.Tensor] = []
    for part in images.split(chunk):
        targets = torch.full((len(part),), label, device=part.device)
        grads = torch.autograd.grad(F.cross_entropy(network(part), targets, reduction="sum") / len(images), parameters)
        total = list(grads) if not total else [a + b for a, b in zip(total, grads)]
    return total


@register_method("dc")
class GradientMatching(Method):
    config_class = GMConfig
    smoke_options = {"iterations": 1, "real_batch": 8, "outer_loop": 2, "inner_loop": 1}

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        cfg, train = self.config, ctx.splits.train
        real_images_needed(train, ctx.ipc, cfg.factor)
        fingerprint = config_hash({"config": hash_dict(cfg), "ipc": ctx.ipc, "seed": ctx.seed, "data": ctx.splits.fingerprint})
        ((images, record),) = run_items([WholeSet()], fingerprint, lambda item: self._run(ctx, item, fingerprint),
                                        "gradient matching", ctx.workdir, ctx.progress)
        labels = torch.arange(train.num_classes).repeat_interleave(ctx.ipc)
        return DistilledSet(images, labels, train.class_names, train.mean, train.std, meta={"items": [record]}, factor=cfg.factor)

    def _run(self, ctx: SynthesisContext, item: WholeSet, fingerprint: str) -> tuple[torch.Tensor, dict]:
        cfg, train = self.config, ctx.splits.train
        spec, (outer_loop, inner_loop) = parse_model_spec(cfg.network), cfg.loops(ctx.ipc)
        classes, stats = train.num_classes, (train.mean, train.std)
        generator = torch.Generator().manual_seed(item_seed(ctx.seed, "dc"))
        pools = [train.load(train.indices_of(c)).to(ctx.device) for c in range(classes)]
        mean, std = (torch.tensor(v, device=ctx.device).view(1, -1, 1, 1) for v in stats)
        low, high = (0 - mean) / std, (1 - mean) / std
        per_class = ctx.ipc * cfg.factor**2  # decoded images per class
        herded = herding_picks(ctx, range(classes), cfg.init_teacher, cfg.init, per_class) if "herding" in cfg.init else None
        x = formation.encode(start_images(cfg.init, pools, per_class, generator, mean, std, herded), cfg.factor).requires_grad_(True)
        optimizer = torch.optim.SGD([x], lr=cfg.lr, momentum=cfg.momentum)
        checkpoint = Path(ctx.workdir) / f"{item.key}.checkpoint.safetensors" if ctx.workdir else None
        done = _resume(checkpoint, fingerprint, x, optimizer, generator)
        labels = torch.arange(classes, device=ctx.device).repeat_interleave(per_class)
        real_labels = torch.arange(classes, device=ctx.device).repeat_interleave(torch.tensor([len(p) for p in pools], device=ctx.device))
        curves, every = ctx.curves.child(f"dc/{item.key}"), log_interval(cfg.iterations)
        between = f"{cfg.real_batches} real batches" if cfg.real_batches else f"{inner_loop} epochs on the set"
        with steps(ctx.progress, f"gradient matching ({outer_loop} steps per network, {between} between)", cfg.iterations,
                   unit="iteration") as bar:
            for _ in range(done):
                bar.skip()
            for iteration in range(done, cfg.iterations):
                network = fresh_network(spec, train, generator, ctx.device)
                parameters = [p for p in network.parameters() if p.requires_grad]
                batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())
                chunk = cfg.real_batch if ctx.device.type == "cuda" or batch_norm else CPU_CHUNK
                network_optimizer = torch.optim.SGD(parameters, lr=cfg.network_lr)
                for outer in range(outer_loop):
                    loss = self._matching_loss(network, parameters, formation.decode(x, cfg.factor) * std + mean, pools, stats, generator, chunk)
                    if not torch.isfinite(loss):
                        raise DDKitError(f"gradient matching loss became {loss.item()} at iteration {iteration + 1}; check the "
                                         f"training images for NaN or infinite pixels, or lower the lr (now {cfg.lr})")
                    step_in_box(optimizer, loss, x, low, high)
                    if outer == outer_loop - 1:
                        continue
                    if cfg.real_batches:
                        self._train_on_real(network, network_optimizer, pools, real_labels, stats, generator)
                    else:
                        decoded = formation.decode(x.detach(), cfg.factor) * std + mean
                        self._train_network(network, network_optimizer, decoded, labels, inner_loop, stats, generator)
                if (iteration + 1) % every == 0:
                    curves.log(iteration + 1, loss=loss.detach())  # the iteration's last matching step
                if checkpoint is not None and (iteration + 1) % cfg.checkpoint_every == 0 and iteration + 1 < cfg.iterations:
                    _save_checkpoint(checkpoint, fingerprint, iteration + 1, x, optimizer, generator)
                bar.advance()
        curves.close()
        _remove_checkpoint(checkpoint, fingerprint)
        images = (x.detach() * std + mean).clamp(0, 1).cpu()
        return images, {"item": item.key, "loops": [outer_loop, inner_loop], "final_loss": round(float(loss.detach()), 6)}

    def _matching_loss(self, network: nn.Module, parameters: list[torch.Tensor], synthetic: torch.Tensor,
                       pools: list[torch.Tensor], stats, generator: torch.Generator, chunk: int) -> torch.Tensor:
        """Σ over classes of the distance between the gradients on a real batch and on the class's synthetic images."""
        cfg, ipc = self.config, len(synthetic) // len(pools)
        same_draw = torch.zeros(cfg.real_batch + ipc, dtype=torch.long)  # DSA siamese: one draw for a class's real + synthetic
        loss = synthetic.new_zeros(())
        for c, pool in enumerate(pools):
            real = pool[torch.randint(len(pool), (cfg.real_batch,), generator=generator).to(pool.device)]
            mine = synthetic[c * ipc:(c + 1) * ipc]
            if cfg.augmentation == "dsa":
                both = dsa_siamese(torch.cat([real, mine]), stats, generator, same_draw)
                real, mine = both[:cfg.real_batch], both[cfg.real_batch:]
            targets = torch.full((ipc,), c, device=mine.device)
            mine_gradient = torch.autograd.grad(F.cross_entropy(network(mine), targets), parameters, create_graph=True)
            loss = loss + gradient_distance(mean_loss_gradient(network, parameters, real, c, chunk), list(mine_gradient))
        return loss

    def _train_network(self, network, optimizer, images: torch.Tensor, labels: torch.Tensor, epochs: int, stats,
                       generator: torch.Generator) -> None:
        for _ in range(epochs):
            order = torch.randperm(len(images), generator=generator).to(images.device)
            for batch in order.split(self.config.train_batch):
                self._network_step(network, optimizer, images[batch], labels[batch], stats, generator)

    def _train_on_real(self, network, optimizer, pools: list[torch.Tensor], labels: torch.Tensor, stats, generator: torch.Generator) -> None:
        """`real_batches` steps on batches drawn uniformly from the whole training split (IDC's network update)."""
        for _ in range(self.config.real_batches):
            picks = torch.randint(len(labels), (self.config.train_batch,), generator=generator).to(labels.device)
            self._network_step(network, optimizer, rows_of(pools, picks), labels[picks], stats, generator)

    def _network_step(self, network, optimizer, images: torch.Tensor, labels: torch.Tensor, stats, generator: torch.Generator) -> None:
        inputs = dsa(images, stats, generator) if self.config.augmentation == "dsa" else images
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(inputs), labels).backward()
        optimizer.step()


def _save_checkpoint(path: Path, fingerprint: str, done: int, x: torch.Tensor, optimizer: torch.optim.Optimizer,
                     generator: torch.Generator) -> None:
    momentum = optimizer.state[x].get("momentum_buffer")
    tensors = {"images": x.detach().cpu(), "generator": generator.get_state()}
    if momentum is not None:
        tensors["momentum"] = momentum.cpu()
    atomic_write_tensors(path, tensors, {"fingerprint": fingerprint, "done": str(done)})


def _checkpoint_of(path: Optional[Path], fingerprint: str) -> Optional[tuple[dict, dict]]:
    """The tensors and metadata of this configuration's checkpoint at `path`, if there is a readable one."""
    if path is None or not path.exists():
        return None
    try:
        tensors, meta = read_tensors(path)
    except Exception:  # truncated by a crash, or not a safetensors file: not ours to trust
        return None
    return (tensors, meta) if meta.get("fingerprint") == fingerprint else None


def _remove_checkpoint(path: Optional[Path], fingerprint: str) -> None:
    """Delete the finished run's checkpoint: only a file that carries this configuration's fingerprint."""
    if _checkpoint_of(path, fingerprint) is not None:
        path.unlink()


def _resume(path: Optional[Path], fingerprint: str, x: torch.Tensor, optimizer: torch.optim.Optimizer,
            generator: torch.Generator) -> int:
    """Iterations an interrupted run of the same configuration finished (restoring its state), else 0."""
    found = _checkpoint_of(path, fingerprint)
    if found is None:
        return 0
    tensors, meta = found
    with torch.no_grad():
        x.copy_(tensors["images"])
    if "momentum" in tensors:
        optimizer.state[x]["momentum_buffer"] = tensors["momentum"].to(x.device)
    generator.set_state(tensors["generator"])
    return int(meta["done"])
