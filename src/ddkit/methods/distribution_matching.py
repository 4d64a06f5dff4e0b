"""Distribution matching (DM): Zhao & Bilen, "Dataset Condensation with Distribution Matching",
WACV 2023 (arXiv 2110.04181); reference code VICO-UoE/DatasetCondensation, main_DM.py.

Each iteration draws a freshly initialised network and moves the synthetic images of every class
so that the mean of their embeddings matches the mean embedding of a batch of real images of the
class; real and synthetic images of a class pass through the same siamese DSA transformation.

| paper / main_DM.py                         | here                                            |
|--------------------------------------------|-------------------------------------------------|
| ψ_ϑ, a random ConvNet per iteration         | `network` built with a new seed each iteration  |
| ‖mean ψ(A(T_c)) − mean ψ(A(S_c))‖² summed   | `matching_loss`                                 |
| Iteration, batch_real, lr_img, momentum 0.5 | `iterations`, `real_batch`, `lr`, `momentum`    |
| init 'real' / 'noise'                       | `init` (also the herding coresets, see below)   |

What differs from main_DM.py, and why:
- all classes of a work item go through the network together (real images without a graph, in
  cache-sized chunks on CPU, in one pass on a GPU); with instance norm every image is normalised
  on its own, so this is the same loss. A BatchNorm `network` would mix the classes' statistics.
- one DSA transformation family per iteration for all classes (the reference draws one per class),
  with its parameters drawn per class and shared by that class's real and synthetic images.
- the images stay valid pixels: they are clamped to [0, 1] after each step (the reference leaves
  them unbounded in normalised space).
- `init: herding` (or `kernel-herding`, herding under an RBF kernel) starts from that coreset of
  `init_teacher`'s features instead of random real images (issue 14: a matching method started from
  the strongest real-image sets).
- `factor: f` (IDC's multi-formation, ddkit.data.formation) stores f² low-resolution tiles per
  image and matches their decoded, upsampled copies: ipc·f² images per class in the same pixels.
- `embedding: <teacher>` matches in one trained teacher's features, frozen, instead of a random
  network per iteration, and `kernel: rbf` matches the classes' distributions (MMD under an RBF
  kernel) rather than their means: kernel herding carried from the choice of real images to their
  pixels, with the soft-label teacher in the loop (issue 14's soft-label lead). The paper's choices
  stay the defaults.

Work items are groups of classes (`classes_per_item`); each draws every random number from a
generator seeded by the item, so sets do not depend on how many processes made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import torch

from ddkit.config import ADDED_OPTION, hash_dict
from ddkit.curves import log_interval
from ddkit.data import formation
from ddkit.data.augment import dsa_siamese
from ddkit.data.distilled import DistilledSet
from ddkit.data.images import ImageSet
from ddkit.errors import DDKitError
from ddkit.methods.base import Method, SynthesisContext, frozen, real_images_needed, register_method, step_in_box
from ddkit.methods.herding import herding_picks
from ddkit.methods.runner import run_items
from ddkit.models.classifier import Classifier, build_model, parse_model_spec
from ddkit.progress import steps
from ddkit.runs import config_hash
from ddkit.seeds import item_seed

# On CPU the real batch's forward pass is memory-bound (a 2,560-image batch has a 1 GB activation at
# 28 px); in chunks of 32 its activations stay in cache: 4.9-5.6 s against 9.4-10.3 s for one pass
# (ConvNet-3 width 128, one thread). A GPU takes the batch in one pass.
CPU_CHUNK = 32


@dataclass(frozen=True)
class DMConfig:
    iterations: int = 1000  # optimisation steps per work item (the paper runs 20,000)
    lr: float = 1.0  # SGD step on images in normalised units, (x − mean) / std, as main_DM.py's lr_img
    momentum: float = 0.5  # SGD momentum on the images (main_DM.py: 0.5)
    real_batch: int = 256  # real images per class and iteration
    init: Literal["real", "noise", "herding", "kernel-herding"] = "real"  # start from random real images of the class, noise, or a herding coreset
    init_teacher: str = "convnet-bn"  # herding inits: the teacher whose features are herded
    network: str = "convnet(width=128,depth=3,norm=instance)"  # the embedding net, re-initialised each iteration
    embedding: str = "random"  # random: a fresh `network` each iteration (the paper); or a teacher recipe, whose frozen features are matched
    kernel: Literal["linear", "rbf"] = "linear"  # linear: match class means (the paper); rbf: MMD², σ² the real batch's median squared distance
    augmentation: Literal["dsa", "none"] = "dsa"  # siamese DSA on real and synthetic images alike
    classes_per_item: int = 0  # classes optimised together in one work item; 0: all of them
    factor: int = field(default=1, metadata=ADDED_OPTION)  # multi-formation (IDC): each stored image holds factor² tiles, matched decoded

    def __post_init__(self) -> None:
        for name in ("iterations", "lr", "real_batch"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.momentum < 1 or self.classes_per_item < 0:
            raise ValueError("momentum must lie in [0, 1) and classes_per_item must not be negative")


@dataclass(frozen=True)
class WorkItem:
    classes: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"item-c{self.classes[0]:04d}-{self.classes[-1]:04d}"


def work_items(config: DMConfig, num_classes: int) -> list[WorkItem]:
    width = config.classes_per_item or num_classes
    return [WorkItem(tuple(range(c, min(c + width, num_classes)))) for c in range(0, num_classes, width)]


def matching_loss(real: torch.Tensor, synthetic: torch.Tensor, classes: int, kernel: str = "linear") -> torch.Tensor:
    """Σ_c MMD² between class c's real and synthetic embeddings; rows are class-major. Linear kernel:
    ‖mean real − mean synthetic‖² (the paper); rbf: σ² the median squared distance of the real batch."""
    real, synthetic = real.view(classes, -1, real.shape[1]), synthetic.view(classes, -1, synthetic.shape[1])
    if kernel == "linear":
        return (real.mean(1) - synthetic.mean(1)).square().sum()
    return sum(rbf_mmd(r, s) for r, s in zip(real, synthetic))


def rbf_mmd(real: torch.Tensor, synthetic: torch.Tensor) -> torch.Tensor:
    """Biased MMD² estimate between two samples under exp(−‖a − b‖² / 2σ²), σ² from `real` alone."""
    real_squared = torch.cdist(real, real).square()
    scale = 2 * real_squared.median().clamp_min(1e-12)  # the median includes the zero diagonal: cheap, and σ² stays positive

    def mean_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).square() / scale).mean()

    return torch.exp(-real_squared / scale).mean() - 2 * mean_kernel(real, synthetic) + mean_kernel(synthetic, synthetic)


@register_method("dm")
class DistributionMatching(Method):
    config_class = DMConfig
    smoke_options = {"iterations": 2, "real_batch": 8}

    def synthesize(self, ctx: SynthesisContext) -> DistilledSet:
        cfg, train = self.config, ctx.splits.train
        spec = parse_model_spec(cfg.network)
        items = work_items(cfg, train.num_classes)
        real_images_needed(train, ctx.ipc, cfg.factor)
        fingerprint = config_hash({"config": hash_dict(cfg), "ipc": ctx.ipc, "seed": ctx.seed, "data": ctx.splits.fingerprint})
        made = run_items(items, fingerprint, lambda item: self._run_item(ctx, item, spec), "distribution matching",
                         ctx.workdir, ctx.progress)
        images = torch.cat([block for block, _ in made])  # class-major: items are class ranges in order
        labels = torch.arange(train.num_classes).repeat_interleave(ctx.ipc)
        return DistilledSet(images, labels, train.class_names, train.mean, train.std, meta={"items": [r for _, r in made]},
                            factor=cfg.factor)

    def _run_item(self, ctx: SynthesisContext, item: WorkItem, spec) -> tuple[torch.Tensor, dict]:
        cfg, train = self.config, ctx.splits.train
        generator = torch.Generator().manual_seed(item_seed(ctx.seed, "dm", item.classes))
        members = [train.indices_of(c) for c in item.classes]
        pools = [train.load(m).to(ctx.device) for m in members]
        mean, std = (torch.tensor(v, device=ctx.device).view(1, -1, 1, 1) for v in (train.mean, train.std))
        low, high = (0 - mean) / std, (1 - mean) / std
        per_class = ctx.ipc * cfg.factor**2  # decoded images per class
        herded = herding_picks(ctx, item.classes, cfg.init_teacher, cfg.init, per_class) if "herding" in cfg.init else None
        x = formation.encode(start_images(cfg.init, pools, per_class, generator, mean, std, herded), cfg.factor).requires_grad_(True)
        optimizer = torch.optim.SGD([x], lr=cfg.lr, momentum=cfg.momentum)
        # the real batch of class k takes owner k, its synthetic images owner k too: one draw per class
        real_owner = torch.arange(len(item.classes)).repeat_interleave(cfg.real_batch)
        synthetic_owner = torch.arange(len(item.classes)).repeat_interleave(per_class)
        owner = torch.cat([real_owner, synthetic_owner])
        curves, every = ctx.curves.child(f"dm/{item.key}"), log_interval(cfg.iterations)
        real_chunk = len(real_owner) if ctx.device.type == "cuda" else CPU_CHUNK
        teacher = None if cfg.embedding == "random" else ctx.teacher(cfg.embedding).model
        # one item can run for an hour on a CPU: its steps get their own bar (plain lines in a log)
        with steps(ctx.progress, f"distribution matching {item.key}", cfg.iterations, unit="step") as bar, \
                frozen([teacher] if teacher is not None else []):
            for step in range(cfg.iterations):
                network = teacher if teacher is not None else fresh_network(spec, train, generator, ctx.device).requires_grad_(False)
                real = torch.cat([pool[torch.randint(len(pool), (cfg.real_batch,), generator=generator).to(ctx.device)] for pool in pools])
                synthetic = formation.decode(x, cfg.factor) * std + mean  # decoding is affine, so it commutes with the unit change
                if cfg.augmentation == "dsa":
                    both = dsa_siamese(torch.cat([real, synthetic]), (train.mean, train.std), generator, owner)
                    real, synthetic = both[:len(real_owner)], both[len(real_owner):]
                with torch.no_grad():
                    real_embedding = torch.cat([network.features(chunk) for chunk in real.split(real_chunk)])
                loss = matching_loss(real_embedding, network.features(synthetic), len(item.classes), cfg.kernel)
                if not torch.isfinite(loss):
                    raise DDKitError(f"distribution matching loss became {loss.item()} at step {step + 1} of {item.key}; check the "
                                     f"training images for NaN or infinite pixels, or lower the lr (now {cfg.lr})")
                if (step + 1) % every == 0:
                    curves.log(step + 1, loss=loss.detach())
                step_in_box(optimizer, loss, x, low, high)
                bar.advance()
        curves.close()
        images = (x.detach() * std + mean).clamp(0, 1).cpu()
        return images, {"item": item.key, "final_loss": round(float(loss.detach()), 6)}


def start_images(init: str, pools: list[torch.Tensor], ipc: int, generator: torch.Generator, mean: torch.Tensor,
                 std: torch.Tensor, herded: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
    """`ipc` images per class pool, class-major, in normalised units: random real images of the class,
    the `herded` positions of each pool, or noise."""
    if init != "noise":
        picks = herded if herded is not None else [torch.randperm(len(pool), generator=generator)[:ipc] for pool in pools]
        start = torch.cat([pool[p.to(pool.device)] for pool, p in zip(pools, picks)])
        return (start - mean) / std
    return torch.randn(len(pools) * ipc, *pools[0].shape[1:], generator=generator).to(mean.device)


def fresh_network(spec, train: ImageSet, generator: torch.Generator, device: torch.device) -> Classifier:
    """A newly initialised network in train mode, seeded from `generator`: matching methods draw one per iteration."""
    network = build_model(spec, train.num_classes, train.image_shape, train.mean, train.std,
                          seed=int(torch.randint(2**62, (1,), generator=generator)))
    return network.to(device).train()
