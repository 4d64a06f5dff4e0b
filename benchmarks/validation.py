"""Choosing a default on the validation split: one IPC-10 set per candidate, one student (seed 0)
of the `hard-dsa` preset (or the one named), or several student seeds where one student's spread
is as large as the differences, its accuracy on the validation split. Shared by the
benchmarks that tune (diffusion.py --tune / --choose-defaults, inversion.py --sweep, kd_sets.py
--choose); the test split takes no part. `make_and_evaluate` is the other shared loop: make sets,
then score them on the test split (kd_sets.py, formation.py)."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ddkit.data import DatasetConfig, load_dataset
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.evaluate.students import train_student
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set
from ddkit.progress import make_progress
from ddkit.runs import atomic_write_json, read_json
from ddkit.training import accuracy

NOTE = ("One student per candidate (seed 0, identical training randomness), so differences of about a point "
        "are within the spread of students across seeds (0.3–1.8 points at IPC 10).")


def validation_scores(candidates: dict[str, tuple[str, dict]], out: Path, device: torch.device, preset_name: str = "hard-dsa",
                      seeds: tuple[int, ...] = (0,)) -> str:
    """A Markdown table of each candidate (name -> (method, options)); results are kept in
    `out`/<name>/val.json (val-<preset>.json for a preset other than hard-dsa; one file per student seed
    after the first, val-<preset>-seed<k>.json)."""
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    preset = load_eval_preset(preset_name)
    rows = []
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        for name, (method, options) in candidates.items():
            folder = out / name.replace(" ", "_")
            results = []
            for seed in seeds:
                result_path = folder / ("val" + ("" if preset_name == "hard-dsa" else f"-{preset_name}") + (f"-seed{seed}" if seed else "") + ".json")
                if not result_path.exists():
                    started = time.perf_counter()
                    distilled = make_set(method, options, 10, 0, splits, dataset, teachers, folder, progress)
                    seconds = time.perf_counter() - started
                    teacher = teachers(preset.teacher) if preset.labels == "soft-online" else None
                    model = train_student(distilled.as_image_set(), preset, preset.student, seed, teacher, progress, device)
                    atomic_write_json(result_path, {"val_accuracy": round(accuracy(model, splits.val), 2), "synthesis_seconds": round(seconds, 1)})
                results.append(read_json(result_path))
            scores = [r["val_accuracy"] for r in results]
            score = f"{scores[0]:.2f}" if len(scores) == 1 else f"{statistics.mean(scores):.2f} ± {statistics.pstdev(scores):.2f}"
            rows.append(f"| {name} | `{options}` | {score} | {results[0]['synthesis_seconds']:.0f} |")
    students = "seed 0" if seeds == (0,) else f"seeds {', '.join(map(str, seeds))}: mean ± std"
    note = NOTE if len(seeds) == 1 else "The same set scored by one student per seed (identical training randomness across candidates)."
    return "\n".join([note, "", f"| candidate | options | val top-1 ({preset_name}, {students}) | synthesis s |", "|---|---|---|---|", *rows])


def make_and_evaluate(jobs: list[tuple[Path, str, dict, int, int]], presets: list[str], device: torch.device) -> None:
    """Make each set (folder, method, options, IPC, set seed) and evaluate it under every preset on the
    test split, results in folder/eval; both resume."""
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        loaded = [load_eval_preset(p) for p in presets]
        for folder, method, options, ipc, seed in jobs:
            distilled = make_set(method, options, ipc, seed, splits, dataset, teachers, folder, progress)
            for preset in loaded:
                evaluate_set(distilled, preset, splits, folder / "eval", None, teachers, progress, device)
