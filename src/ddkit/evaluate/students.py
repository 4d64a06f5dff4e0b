"""Train fresh students on a distilled set under a named preset and score them on the test split.

Under torchrun every rank calls `evaluate_set` together and gets the same summaries back. The
ranks share the work in one of two ways (`parallel`):

- spread: the (student, seed) runs are dealt round robin over the ranks; each run trains in one
  process exactly as it would alone, so every number is the one-process number, bit for bit.
- ddp: the runs go one after the other, each student trained by every rank together under
  DistributedDataParallel (`training.fit(ddp=True)`): for sets too large for one process to get
  through quickly. Its numbers agree with one process within a tolerance (ddkit.training).
- auto: ddp when there are several ranks and the set holds at least DDP_MIN_IMAGES images,
  spread otherwise (a small set's student trains in seconds; whole runs share out better).

Every seed's record says which mode and world size computed it.
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Optional, get_args

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from ddkit import __version__, distributed
from ddkit.curves import CurveLog
from ddkit.data.distilled import DistilledSet
from ddkit.data.images import DataSplits, ImageSet
from ddkit.data.shifts import shifted_sets
from ddkit.data.splits import carve_validation
from ddkit.devices import device_label
from ddkit.errors import DDKitError
from ddkit.evaluate.presets import EvalPreset
from ddkit.locks import exclusive
from ddkit.models import ModelSpec, build_model
from ddkit.models.ensemble import EnsembleModel
from ddkit.models.teachers import Teacher
from ddkit.relabel import StoredLabels, record_soft_labels
from ddkit.runs import atomic_write_json, check_writable, read_json
from ddkit.training import Batch, LossFn, accuracy, fit

TeacherLoader = Callable[[str], Teacher]
Parallel = Literal["auto", "spread", "ddp"]
DDP_MIN_IMAGES = 5000  # auto: sets at least this large train each student over all ranks (DDP)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Summary:
    preset: str
    student: str
    teacher: Optional[str]
    quick: bool
    seeds: list[int]
    accuracies: list[float]
    mean: float
    std: float  # population std over seeds, as the DC/DSA code reports
    shift_means: dict[str, float] = field(default_factory=dict)  # mean accuracy on each shifted test copy
    # mean accuracy of the same students on the validation split, what a choice between sets may look at;
    # None under a quick preset, for a dataset without a validation split, or when a reused record predates it
    val_mean: Optional[float] = None

    def text(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


def kd_loss(teacher: nn.Module, temperature: float) -> LossFn:
    """KL(teacher ‖ student) at temperature T, scaled by T² (Hinton et al. 2015), teacher run online."""

    def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = F.log_softmax(teacher(batch.x) / temperature, dim=1)
        return _kl(logits, target, temperature)

    return loss


def mse_ce_loss(teacher: nn.Module, labels: torch.Tensor, ce_weight: float) -> LossFn:
    """PRISM's evaluation loss: MSE to the teacher's logits + ce_weight · CE on the set's labels.
    The CE is on each image's own label even in a CutMix batch, as PRISM's train_FKD_parallel.py
    (`partial_target`): the teacher's logits of the mixed image carry the mixing."""

    def loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            target = teacher(batch.x)
        return F.mse_loss(logits, target) + ce_weight * F.cross_entropy(logits, labels[batch.index])

    return loss


def stored_kd_loss(stored: StoredLabels) -> LossFn:
    return lambda logits, batch: _kl(logits, stored.target_log_probs(batch.epoch, batch.index), stored.temperature)


def set_kd_loss(soft_labels: torch.Tensor, temperature: float) -> LossFn:
    """KL to the set's own per-image soft labels at T: probabilities p become softmax(log p / T),
    which is exactly the teacher's softmax at T when p was its softmax at 1."""
    # One-hot rows hold exact zeros; log 0 would turn KL's 0 · log 0 into NaN.
    log_probs = soft_labels.clamp_min(torch.finfo(soft_labels.dtype).tiny).log()
    target = F.log_softmax(log_probs / temperature, dim=1)
    return lambda logits, batch: _kl(logits, target[batch.index], temperature)


def _kl(logits: torch.Tensor, target_log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    student = F.log_softmax(logits / temperature, dim=1)
    return F.kl_div(student, target_log_probs, log_target=True, reduction="batchmean") * temperature**2


def rescaled(teacher: Teacher, rescale: str) -> Teacher:
    """`teacher`, with an ensemble's logits put on one scale the preset's way (ddkit.models.ensemble)."""
    if not isinstance(teacher.model, EnsembleModel) or teacher.model.rescale == rescale:
        return teacher
    model = EnsembleModel(list(teacher.model.members), rescale).eval()
    return replace(teacher, model=model, info=teacher.info | {"key": f"{teacher.label} ({rescale} rescale)"}, feature_cache={})


def scoring_split(preset: EvalPreset, splits: DataSplits) -> ImageSet:
    if preset.test_subset is None or preset.test_subset >= len(splits.test):
        return splits.test
    return carve_validation(splits.test, preset.test_subset, seed=0)[1]


def validation_split(preset: EvalPreset, splits: DataSplits) -> Optional[ImageSet]:
    """What the students are also scored on, for choices between sets: the validation split; none for a
    quick preset (demo and tests: nothing is chosen with them, and on a CPU the pass costs as much as a quick training)."""
    return None if preset.quick or len(splits.val) == 0 else splits.val


def train_student(
    data: ImageSet, preset: EvalPreset, student: ModelSpec, seed: int,
    teacher: Optional[Teacher] = None, progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"),
    stored: Optional[StoredLabels] = None, set_soft_labels: Optional[torch.Tensor] = None, curves: Optional[CurveLog] = None,
    ddp: bool = False,
) -> nn.Module:
    model = build_model(student, data.num_classes, data.image_shape, data.mean, data.std, seed=seed).to(device)
    return fit(model, data, preset.train, seed=seed, loss_fn=label_loss(preset, data, teacher, stored, device, set_soft_labels),
               progress=progress, description=f"{preset.name} {student.label()} seed {seed}", curves=curves, ddp=ddp)


def label_loss(
    preset: EvalPreset, data: ImageSet, teacher: Optional[Teacher], stored: Optional[StoredLabels], device: torch.device,
    set_soft_labels: Optional[torch.Tensor] = None,
) -> Optional[LossFn]:
    """The preset's label mode as a loss; None means fit's hard-label default."""
    if preset.labels == "hard":
        return None
    if preset.labels == "soft-set":
        if set_soft_labels is None:
            raise ValueError("soft-set presets need the set's soft labels")
        return set_kd_loss(set_soft_labels.to(device), preset.temperature)
    if preset.labels == "soft-stored":
        if stored is None:
            raise ValueError("soft-stored presets need the recorded labels")
        return stored_kd_loss(stored)
    if teacher is None:
        raise ValueError("soft-label presets need a teacher")
    if preset.loss == "mse-ce":
        return mse_ce_loss(teacher.model, data.labels.to(device), preset.ce_weight)
    return kd_loss(teacher.model, preset.temperature)


def stored_labels(
    data: ImageSet, preset: EvalPreset, seed: int, teacher: Teacher, path: Path, progress: Optional[Progress] = None,
) -> StoredLabels:
    """Recorded soft labels for one student seed: read from `path`, or recorded (replaying the run) and saved."""
    if path.exists():
        return StoredLabels.load(path)
    labels = record_soft_labels(teacher.model, data, preset.train, seed, preset.temperature, preset.stored_top_k, progress)
    labels.save(path)
    return labels


def student_dir(root: Path, preset: EvalPreset, student: ModelSpec) -> Path:
    return Path(root) / preset.name / re.sub(r"[^A-Za-z0-9._=-]+", "_", student.label())


def evaluate_set(
    distilled: DistilledSet, preset: EvalPreset, splits: DataSplits, results_dir: Path,
    students: Optional[list[ModelSpec]] = None, teacher_loader: Optional[TeacherLoader] = None,
    progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"), parallel: Parallel = "auto",
) -> list[Summary]:
    """Evaluate under `preset` for each student; finished seeds (same preset content) are reused.

    Nothing is trained before the results folder has proven writable, and one job at a time
    evaluates a set (another waits, then reuses the seeds it finished). Under torchrun every rank
    calls this together; `parallel` says how they share the runs (module docstring)."""
    distilled = distilled.decoded()  # students train on a multi-formation set's tiles
    check_preset_fits(preset, distilled)
    if len(splits.test) == 0:
        raise DDKitError(f"dataset {splits.name!r} has no test images to score students on; pass --data-root with "
                         "ROOT/val/<class>/ images (ImageNet layout)")
    mode = parallel_mode(parallel, preset, len(distilled.labels), distributed.current())
    check_writable(results_dir)
    with distributed.main_holds(exclusive(results_dir, f"evaluations of {Path(results_dir).parent}")):
        return _evaluate_set(distilled, preset, splits, results_dir, students, teacher_loader, progress, device, mode)


def parallel_mode(parallel: str, preset: EvalPreset, images: int, world: distributed.World) -> str:
    """'spread' or 'ddp': how the ranks of `world` share an evaluation of a set of `images`."""
    if parallel not in get_args(Parallel):
        raise DDKitError(f"unknown parallel mode {parallel!r}; choose one of: {', '.join(get_args(Parallel))}")
    if parallel == "auto":
        large = world.distributed and images >= DDP_MIN_IMAGES
        return "ddp" if large and preset.labels != "soft-stored" else "spread"
    if parallel == "ddp" and preset.labels == "soft-stored":
        raise DDKitError(f"preset {preset.name} replays soft labels recorded for one-process batches, which DDP "
                         "does not draw; evaluate it with parallel 'spread'")
    return parallel


def check_preset_fits(preset: EvalPreset, distilled: DistilledSet) -> None:
    """Refuse a preset the set cannot be evaluated under, before anything trains."""
    if preset.labels == "soft-set" and distilled.soft_labels is None:
        raise DDKitError(f"preset {preset.name} learns from the set's own soft labels, but this set has none; "
                         "import one with soft labels ('ddkit import') or choose another preset")


def _evaluate_set(
    distilled: DistilledSet, preset: EvalPreset, splits: DataSplits, results_dir: Path,
    students: Optional[list[ModelSpec]], teacher_loader: Optional[TeacherLoader], progress: Optional[Progress],
    device: torch.device, mode: str,
) -> list[Summary]:
    teacher = teacher_loader(preset.teacher) if preset.uses_teacher and teacher_loader else None
    if preset.uses_teacher and teacher is None:
        raise ValueError("soft-label presets need a teacher loader")
    teacher = teacher and rescaled(teacher, preset.ensemble_rescale)
    data = distilled.as_image_set()
    scored, validation = scoring_split(preset, splits), validation_split(preset, splits)
    shifted = shifted_sets(scored, preset.shifts)
    runs = [(student, seed) for student in students or [preset.student] for seed in preset.seeds]
    paths = [student_dir(results_dir, preset, student) / f"seed-{seed}.json" for student, seed in runs]
    # Rank 0 alone looks for finished seeds: a rank that finishes one meanwhile must not change another's plan.
    results = distributed.on_main(lambda: {i: r for i, path in enumerate(paths) if (r := _finished(path, preset))})
    todo = [i for i in range(len(runs)) if i not in results]

    def run(i: int, ddp: bool) -> dict:
        student, seed = runs[i]
        return _evaluate_run(data, preset, student, seed, teacher, scored, shifted, validation, paths[i], results_dir,
                             progress, device, distilled.soft_labels, mode, ddp)

    if mode == "ddp":
        results |= {i: run(i, ddp=True) for i in todo}
    else:
        mine = distributed.shard(todo)
        for part in distributed.gather_results(lambda: {i: run(i, ddp=False) for i in mine}):
            results |= part
    summaries = []
    for k, student in enumerate(students or [preset.student]):
        records = [results[k * len(preset.seeds) + j] for j in range(len(preset.seeds))]
        accuracies = [r["test_accuracy"] for r in records]
        val = [r.get("val_accuracy") for r in records]
        summaries.append(Summary(
            preset.name, student.label(), teacher.label if teacher else None, preset.quick, list(preset.seeds),
            accuracies, round(statistics.fmean(accuracies), 2), round(statistics.pstdev(accuracies), 2),
            {name: round(statistics.fmean(r.get("shift_accuracy", {})[name] for r in records), 2) for name in preset.shifts},
            round(statistics.fmean(val), 2) if None not in val else None,
        ))
    folders = [student_dir(results_dir, preset, student) for student in students or [preset.student]]
    distributed.on_main(lambda: _write_summaries(folders, summaries))
    return summaries


def _write_summaries(folders: list[Path], summaries: list[Summary]) -> None:
    for folder, summary in zip(folders, summaries):
        atomic_write_json(folder / "summary.json", asdict(summary) | {"ddkit": __version__})


def _finished(path: Path, preset: EvalPreset) -> Optional[dict]:
    """The record of a seed finished under this very preset content, or None."""
    if path.exists() and (record := read_json(path)).get("preset_fingerprint") == preset.fingerprint:
        log.debug("%s: reusing %s", preset.name, path)
        return record
    return None


def _evaluate_run(
    data: ImageSet, preset: EvalPreset, student: ModelSpec, seed: int, teacher: Optional[Teacher], scored: ImageSet,
    shifted: dict[str, ImageSet], validation: Optional[ImageSet], path: Path, results_dir: Path, progress: Optional[Progress], device: torch.device,
    set_soft_labels: Optional[torch.Tensor], mode: str, ddp: bool,
) -> dict:
    """Train and score one (student, seed) and write its record; with `ddp`, every rank together (rank 0 writes)."""
    started = time.perf_counter()
    stored = None
    if preset.labels == "soft-stored":  # relabel files belong to the set, shared by every student
        record = Path(results_dir).parent / "relabel" / f"{preset.name}-{preset.fingerprint}" / f"seed-{seed}.safetensors"
        stored = stored_labels(data, preset, seed, teacher, record, progress)
    model = train_student(data, preset, student, seed, teacher, progress, device, stored, set_soft_labels,
                          CurveLog(path.parent / "curves", f"seed-{seed}"), ddp)
    result = {
        "preset": preset.name, "preset_fingerprint": preset.fingerprint, "quick": preset.quick,
        "student": student.label(), "seed": seed, "teacher": teacher.label if teacher else None,
        "test_accuracy": round(accuracy(model, scored, spread=ddp), 3), "scored_images": len(scored),
        "shift_accuracy": {name: round(accuracy(model, images, spread=ddp), 3) for name, images in shifted.items()},
        "val_accuracy": round(accuracy(model, validation, spread=ddp), 3) if validation is not None else None,
        "train_images": len(data), "seconds": round(time.perf_counter() - started, 1),
        "ddkit": __version__, "device": device_label(device),
        "parallel": mode, "world_size": distributed.current().size,
        **({"stored_label_bytes": stored.nbytes} if stored else {}),
    }
    if ddp:
        distributed.on_main(lambda: atomic_write_json(path, result))
    else:
        atomic_write_json(path, result)
    return result


def read_summaries(results_dir: Path) -> list[Summary]:
    return [Summary(**{k: v for k, v in read_json(p).items() if k != "ddkit"}) for p in sorted(Path(results_dir).glob("*/*/summary.json"))]
