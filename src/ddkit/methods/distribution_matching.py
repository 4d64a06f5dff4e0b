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

`idm` is IDM (Zhao et al., "Improved Distribution Matching for Dataset Condensation", CVPR 2023;
reference code uitrbn/IDM, IDM_cifar10.py) on the same loop: multi-formation at factor 2 (its
"partitioning and expansion"), matching through networks trained on real data instead of fresh
ones ("enriched model sampling"), and a cross-entropy on the synthetic images weighted by the
matching network's training accuracy ("class-aware distribution regularisation").

| IDM_cifar10.py (CIFAR-10, IPC 10)               | here                                            |
|-------------------------------------------------|-------------------------------------------------|
| --aug (number_sign_augment: 2 × 2 tiles)        | `factor: 2`                                     |
| a pool of up to net_num nets; one drawn per step | `pool_networks` nets kept at `pool_steps`, one snapshot drawn per iteration |
| nets trained on real batches (trained_bs 256, lr_net 0.01, momentum 0.9, wd 5e-4, no augmentation) | `pool_batch`, `pool_lr`, the same optimiser |
| --syn_ce --ce_weight 0.5 × the net's training accuracy (%) | `ce_weight` × the snapshot's training accuracy (%) |
| --lr_img 0.2, --init real                       | `lr: 0.2`, `init: real`                         |

What differs from IDM_cifar10.py, and why: the reference grows its pool while it matches (a new
random net every 30 iterations; each iteration trains two pool nets for 10 steps of 256 images), so
every matching step pays 20 training steps — about 10 s on a 2-core CPU against the 2.5 s of the
matching. Here the pool is trained once, before matching, and each network is kept at several points
of its training (`pool_steps`: untrained to a few hundred steps, the span of training stages the
reference's pool holds early on); the cross-entropy weight is the snapshot's accuracy on the real
batches of the stretch of training that led to it (the reference's meter averages since its last
evaluation). The pool's networks see the whole training split and are trained once per set, by
every process of a distributed run alike (deterministic from the set's seed).

Work items are groups of classes (`classes_per_item`); each draws every random number from a
generator seeded by the item, so sets do not depend on how many processes made them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F

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
    pool_networks: int = field(default=0, metadata=ADDED_OPTION)  # IDM: match through snapshots of this many trained networks; 0: fresh ones
    pool_steps: list[int] = field(default_factory=lambda: [0, 25, 50, 100, 200, 400], metadata=ADDED_OPTION)  # a pool network's kept steps
    pool_batch: int = field(default=256, metadata=ADDED_OPTION)  # real images per training step of a pool network (IDM's trained_bs)
    pool_lr: float = field(default=0.01, metadata=ADDED_OPTION)  # SGD lr of the pool networks (IDM's lr_net; momentum 0.9, weight decay 5e-4)
    ce_weight: float = field(default=0.0, metadata=ADDED_OPTION)  # IDM: this × the snapshot's training accuracy (%) × the set's cross-entropy

    def __post_init__(self) -> None:
        for name in ("iterations", "lr", "real_batch", "pool_batch", "pool_lr"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if not 0 <= self.momentum < 1 or min(self.classes_per_item, self.pool_networks) < 0:
            raise ValueError("momentum must lie in [0, 1) and classes_per_item / pool_networks must not be negative")
        if self.pool_networks and (not self.pool_steps or min(self.pool_steps) < 0 or self.embedding != "random"):
            raise ValueError("a network pool needs pool_steps of zero or more steps, and embedding: random (the pool replaces the fresh networks)")
        if self.ce_weight < 0 or (self.ce_weight and not self.pool_networks):
            raise ValueError("ce_weight must not be negative, and needs pool_networks > 0: it is weighted by the pool network's training accuracy")


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
        # trained on first use: a resumed run whose items are all done trains no pool
        pool = functools.cache(lambda: trained_pool(cfg, spec, train, ctx, torch.Generator().manual_seed(item_seed(ctx.seed, "dm-pool"))))
        made = run_items(items, fingerprint, lambda item: self._run_item(ctx, item, spec, pool), "distribution matching",
                         ctx.workdir, ctx.progress)
        images = torch.cat([block for block, _ in made])  # class-major: items are class ranges in order
        labels = torch.arange(train.num_classes).repeat_interleave(ctx.ipc)
        return DistilledSet(images, labels, train.class_names, train.mean, train.std, meta={"items": [r for _, r in made]},
                            factor=cfg.factor)

    def _run_item(self, ctx: SynthesisContext, item: WorkItem, spec, pool: Callable[[], list[Snapshot]]) -> tuple[torch.Tensor, dict]:
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
        snapshots = pool() if cfg.pool_networks else []
        pooled = fresh_network(spec, train, generator, ctx.device).eval().requires_grad_(False) if snapshots else None
        synthetic_labels = torch.tensor(item.classes, device=ctx.device).repeat_interleave(per_class)
        # one item can run for an hour on a CPU: its steps get their own bar (plain lines in a log)
        with steps(ctx.progress, f"distribution matching {item.key}", cfg.iterations, unit="step") as bar, \
                frozen([teacher] if teacher is not None else []):
            for step in range(cfg.iterations):
                accuracy = 0.0
                if pooled is not None:
                    snapshot = snapshots[int(torch.randint(len(snapshots), (1,), generator=generator))]
                    pooled.load_state_dict(snapshot.state)
                    network, accuracy = pooled, snapshot.accuracy
                else:
                    network = teacher if teacher is not None else fresh_network(spec, train, generator, ctx.device).requires_grad_(False)
                real = torch.cat([pool[torch.randint(len(pool), (cfg.real_batch,), generator=generator).to(ctx.device)] for pool in pools])
                synthetic = formation.decode(x, cfg.factor) * std + mean  # decoding is affine, so it commutes with the unit change
                if cfg.augmentation == "dsa":
                    both = dsa_siamese(torch.cat([real, synthetic]), (train.mean, train.std), generator, owner)
                    real, synthetic = both[:len(real_owner)], both[len(real_owner):]
                with torch.no_grad():
                    real_embedding = torch.cat([network.features(chunk) for chunk in real.split(real_chunk)])
                synthetic_embedding = network.features(synthetic)
                loss = matching_loss(real_embedding, synthetic_embedding, len(item.classes), cfg.kernel)
                if cfg.ce_weight and accuracy:
                    logits = network.final_linear()(synthetic_embedding)
                    loss = loss + cfg.ce_weight * accuracy * F.cross_entropy(logits, synthetic_labels, reduction="sum") / per_class
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


@dataclass(frozen=True)
class IDMConfig(DMConfig):
    # the reference's CIFAR-10 IPC-10 command (command.txt): --lr_img 0.2 --aug --syn_ce --ce_weight 0.5;
    # three networks of 400 steps bound the pool's training to about 10 minutes on 2 CPU cores
    lr: float = 0.2
    factor: int = 2
    pool_networks: int = 3
    ce_weight: float = 0.5


@register_method("idm")
class ImprovedDistributionMatching(DistributionMatching):
    config_class = IDMConfig
    smoke_options = {"iterations": 2, "real_batch": 8, "pool_networks": 1, "pool_steps": [0, 2], "pool_batch": 16}


@dataclass(frozen=True)
class Snapshot:
    state: dict[str, torch.Tensor]
    accuracy: float  # % top-1 on the real batches of the training stretch that led here; 0 before any training


def trained_pool(cfg: DMConfig, spec, train: ImageSet, ctx: SynthesisContext, generator: torch.Generator) -> list[Snapshot]:
    """IDM's networks, trained ahead of matching: `pool_networks` fresh `network`s, each trained by SGD on
    uniform real batches of the training split (unaugmented, as IDM) and kept at every step in `pool_steps`."""
    pools = [train.load(train.indices_of(c)).to(ctx.device) for c in range(train.num_classes)]
    labels = torch.arange(train.num_classes, device=ctx.device).repeat_interleave(torch.tensor([len(p) for p in pools], device=ctx.device))
    keep, snapshots = sorted(set(cfg.pool_steps)), []
    with steps(ctx.progress, "training the matching networks", cfg.pool_networks * keep[-1], unit="step") as bar:
        for _ in range(cfg.pool_networks):
            network = fresh_network(spec, train, generator, ctx.device)
            optimizer = torch.optim.SGD(network.parameters(), lr=cfg.pool_lr, momentum=0.9, weight_decay=5e-4)
            correct = seen = 0
            for step in range(keep[-1] + 1):
                if step in keep:
                    state = {name: value.detach().clone() for name, value in network.state_dict().items()}
                    snapshots.append(Snapshot(state, 100.0 * correct / seen if seen else 0.0))
                    correct = seen = 0
                if step == keep[-1]:
                    break
                picks = torch.randint(len(labels), (cfg.pool_batch,), generator=generator).to(ctx.device)
                logits = network(rows_of(pools, picks))
                optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(logits, labels[picks]).backward()
                optimizer.step()
                correct, seen = correct + int((logits.argmax(1) == labels[picks]).sum()), seen + len(picks)
                bar.advance()
    return snapshots


def rows_of(pools: list[torch.Tensor], picks: torch.Tensor) -> torch.Tensor:
    """Rows `picks` of the class pools laid end to end, in the order of `picks`, without concatenating the pools."""
    sizes = torch.tensor([len(p) for p in pools], device=picks.device)
    starts = sizes.cumsum(0) - sizes
    owner = torch.searchsorted(starts, picks, right=True) - 1
    rows = pools[0].new_empty(len(picks), *pools[0].shape[1:])
    for c, pool in enumerate(pools):
        mine = owner == c
        rows[mine] = pool[picks[mine] - starts[c]]
    return rows


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
