"""Train fresh students on a distilled set under a named preset and score them on the test split."""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from rich.progress import Progress
from torch import nn

from ddkit import __version__
from ddkit.data.distilled import DistilledSet
from ddkit.data.images import DataSplits, ImageSet
from ddkit.data.splits import carve_validation
from ddkit.devices import device_label
from ddkit.evaluate.presets import EvalPreset
from ddkit.models import ModelSpec, build_model
from ddkit.models.teachers import Teacher
from ddkit.runs import atomic_write_json, read_json
from ddkit.training import LossFn, accuracy, fit

TeacherLoader = Callable[[str], Teacher]


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

    def text(self) -> str:
        return f"{self.mean:.2f} ± {self.std:.2f}"


def soft_label_loss(teacher: nn.Module, temperature: float) -> LossFn:
    """KL(teacher ‖ student) at temperature T, scaled by T² (Hinton et al. 2015), teacher run online."""

    def loss(logits: torch.Tensor, x: torch.Tensor, _index: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.log_softmax(teacher(x) / temperature, dim=1)
        student = F.log_softmax(logits / temperature, dim=1)
        return F.kl_div(student, target, log_target=True, reduction="batchmean") * temperature**2

    return loss


def scoring_split(preset: EvalPreset, splits: DataSplits) -> ImageSet:
    if preset.test_subset is None or preset.test_subset >= len(splits.test):
        return splits.test
    return carve_validation(splits.test, preset.test_subset, seed=0)[1]


def train_student(
    data: ImageSet, preset: EvalPreset, student: ModelSpec, seed: int,
    teacher: Optional[Teacher] = None, progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"),
) -> nn.Module:
    model = build_model(student, data.num_classes, data.image_shape, data.mean, data.std, seed=seed).to(device)
    loss = soft_label_loss(teacher.model, preset.temperature) if preset.labels == "soft-online" and teacher else None
    return fit(model, data, preset.train, seed=seed, loss_fn=loss, progress=progress,
               description=f"{preset.name} {student.label()} seed {seed}")


def student_dir(root: Path, preset: EvalPreset, student: ModelSpec) -> Path:
    return Path(root) / preset.name / re.sub(r"[^A-Za-z0-9._=-]+", "_", student.label())


def evaluate_set(
    distilled: DistilledSet, preset: EvalPreset, splits: DataSplits, results_dir: Path,
    students: Optional[list[ModelSpec]] = None, teacher_loader: Optional[TeacherLoader] = None,
    progress: Optional[Progress] = None, device: torch.device = torch.device("cpu"),
) -> list[Summary]:
    """Evaluate under `preset` for each student; finished seeds (same preset content) are reused."""
    teacher = teacher_loader(preset.teacher) if preset.labels != "hard" and teacher_loader else None
    if preset.labels != "hard" and teacher is None:
        raise ValueError("soft-label presets need a teacher loader")
    data = distilled.as_image_set()
    scored = scoring_split(preset, splits)
    summaries = []
    for student in students or [preset.student]:
        folder = student_dir(results_dir, preset, student)
        accuracies = []
        for seed in preset.seeds:
            path = folder / f"seed-{seed}.json"
            if path.exists() and read_json(path).get("preset_fingerprint") == preset.fingerprint:
                accuracies.append(read_json(path)["test_accuracy"])
                continue
            started = time.perf_counter()
            model = train_student(data, preset, student, seed, teacher, progress, device)
            result = {
                "preset": preset.name, "preset_fingerprint": preset.fingerprint, "quick": preset.quick,
                "student": student.label(), "seed": seed, "teacher": teacher.label if teacher else None,
                "test_accuracy": round(accuracy(model, scored), 3), "scored_images": len(scored),
                "train_images": len(data), "seconds": round(time.perf_counter() - started, 1),
                "ddkit": __version__, "device": device_label(device),
            }
            atomic_write_json(path, result)
            accuracies.append(result["test_accuracy"])
        summary = Summary(
            preset.name, student.label(), teacher.label if teacher else None, preset.quick, list(preset.seeds),
            accuracies, round(statistics.fmean(accuracies), 2), round(statistics.pstdev(accuracies), 2),
        )
        atomic_write_json(folder / "summary.json", asdict(summary) | {"ddkit": __version__})
        summaries.append(summary)
    return summaries


def read_summaries(results_dir: Path) -> list[Summary]:
    return [Summary(**{k: v for k, v in read_json(p).items() if k != "ddkit"}) for p in sorted(Path(results_dir).glob("*/*/summary.json"))]
