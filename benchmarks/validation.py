"""Choosing a default on the validation split: one IPC-10 set per candidate, one student (seed 0)
of the `hard-dsa` preset (or the one named), its accuracy on the validation split. Shared by the
benchmarks that tune (diffusion.py --tune / --choose-defaults, inversion.py --sweep, kd_sets.py
--choose); the test split takes no part."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ddkit.data import DatasetConfig, load_dataset
from ddkit.evaluate import load_eval_preset
from ddkit.evaluate.students import train_student
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set
from ddkit.progress import make_progress
from ddkit.runs import atomic_write_json, read_json
from ddkit.training import accuracy

NOTE = ("One student per candidate (seed 0, identical training randomness), so differences of about a point "
        "are within the spread of students across seeds (0.3–1.8 points at IPC 10).")


def validation_scores(candidates: dict[str, tuple[str, dict]], out: Path, device: torch.device, preset_name: str = "hard-dsa") -> str:
    """A Markdown table of each candidate (name -> (method, options)); results are kept in
    `out`/<name>/val.json (val-<preset>.json for a preset other than hard-dsa)."""
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    preset = load_eval_preset(preset_name)
    rows = []
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        for name, (method, options) in candidates.items():
            folder = out / name.replace(" ", "_")
            result_path = folder / ("val.json" if preset_name == "hard-dsa" else f"val-{preset_name}.json")
            if not result_path.exists():
                started = time.perf_counter()
                distilled = make_set(method, options, 10, 0, splits, dataset, teachers, folder, progress)
                seconds = time.perf_counter() - started
                teacher = teachers(preset.teacher) if preset.labels == "soft-online" else None
                model = train_student(distilled.as_image_set(), preset, preset.student, 0, teacher, progress, device)
                atomic_write_json(result_path, {"val_accuracy": round(accuracy(model, splits.val), 2), "synthesis_seconds": round(seconds, 1)})
            result = read_json(result_path)
            rows.append(f"| {name} | `{options}` | {result['val_accuracy']:.2f} | {result['synthesis_seconds']:.0f} |")
    return "\n".join([NOTE, "", f"| candidate | options | val top-1 ({preset_name}, seed 0) | synthesis s |", "|---|---|---|---|", *rows])
