"""`ddkit run <preset>`: dataset → teachers → synthesize → evaluate → report, in one run directory.

    RUN/manifest.json                 resolved config, seed, versions, git revision
    RUN/sets/<method>-ipc<k>/         a distilled set (see ddkit.data.distilled)
    RUN/sets/<method>-ipc<k>/curves/  synthesis curves of its work items (CSV; TensorBoard runs if installed)
    RUN/sets/<method>-ipc<k>/eval/    per-seed results and summaries, per preset and student
    RUN/report/                       leaderboard.md/.json, grids, accuracy-vs-IPC plots

Each stage skips work whose output already exists, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Optional, Union

import torch
from rich.progress import Progress

from ddkit import distributed
from ddkit.config import build, hash_dict, load_yaml, merge, to_dict
from ddkit.curves import CurveLog
from ddkit.data import DatasetConfig, DistilledSet, load_dataset
from ddkit.data.distilled import matching_set
from ddkit.data.images import DataSplits
from ddkit.diffusion.train import PriorPool
from ddkit.errors import DDKitError
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.evaluate.diversity import measure_diversity
from ddkit.evaluate.fidelity import measure_fidelity
from ddkit.evaluate.presets import eval_preset_path
from ddkit.locks import exclusive
from ddkit.methods import SynthesisContext, resolve_config, synthesize
from ddkit.methods.base import check_method_extras
from ddkit.models import model_spec
from ddkit.models.teachers import TeacherPool
from ddkit.presets import preset_path
from ddkit.report import write_report
from ddkit.runs import RunDir, open_workdir, remove_workdir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunConfig:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    methods: list[str] = field(default_factory=lambda: ["random"])
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    ipcs: list[int] = field(default_factory=lambda: [1, 10])
    eval_presets: list[str] = field(default_factory=lambda: ["hard-dsa-quick"])
    # empty: each preset's own student; "name(key=value,...)" or {name, options} sets options
    students: list[Union[str, dict[str, Any]]] = field(default_factory=list)
    eval_teacher: Optional[str] = None  # replaces the teacher of every soft-label eval preset (e.g. tv-resnet50)
    diversity_extractors: list[str] = field(default_factory=list)  # teachers used only to measure diversity
    fidelity_extractors: list[str] = field(default_factory=list)  # teachers used only for PRDC/FID/KID vs test
    teacher_weights: dict[str, str] = field(default_factory=dict)  # weight file per pretrained teacher recipe (tv-resnet18: FILE)
    seed: int = 0

    def __post_init__(self) -> None:
        for method in self.methods:
            check_method_extras(method)  # before any work: a run must not stop at its last method
        loose = {m.replace("-", "_"): m for m in self.methods}
        for name in list(self.method_options):
            if name not in self.methods and name.replace("-", "_") in loose:  # --method_options.prism_dfkd.x=… from the CLI
                method = loose[name.replace("-", "_")]  # merged into the preset's own options for it, not replacing them
                self.method_options[method] = merge(self.method_options.get(method, {}), self.method_options.pop(name))
        for name in self.method_options:
            if name not in self.methods:
                raise ValueError(f"method_options names {name!r}, which is not in methods {self.methods}")
        for preset in self.eval_presets:
            eval_preset_path(preset)
        for student in self.students:
            model_spec(student)


def load_run_config(name_or_path: str, overrides: Optional[dict[str, Any]] = None) -> RunConfig:
    path = Path(name_or_path) if name_or_path.endswith((".yaml", ".yml")) else preset_path("runs", name_or_path)
    return build(RunConfig, merge(load_yaml(path), overrides or {}), where=path.stem)


def set_name(method: str, ipc: int) -> str:
    return f"{method}-ipc{ipc}"


def comparable_config(method: str, stored: Any) -> Any:
    """A stored set's method config as `hash_dict` writes it: an option added to the method since the
    set was made reads as its default, so the set still matches a config that leaves it there."""
    if not isinstance(stored, dict):
        return stored
    try:
        return json.loads(json.dumps(hash_dict(resolve_config(method, stored))))
    except (DDKitError, TypeError, ValueError):
        return stored  # not a config of this method: compared as stored, so it differs


def make_set(
    method: str, options: dict[str, Any], ipc: int, seed: int, splits: DataSplits, dataset: DatasetConfig,
    teachers: TeacherPool, out: Path, progress: Optional[Progress] = None,
) -> DistilledSet:
    """Synthesize into `out` unless the same set is already there; refuse anything else at `out`."""
    wanted = json.loads(json.dumps({"method": method, "config": hash_dict(resolve_config(method, options)),
                                    "ipc": ipc, "seed": seed, "dataset": to_dict(dataset)}))
    distributed.check_agree({"set": wanted, "data": splits.fingerprint}, "set configuration or dataset")
    comparable = {"config": lambda stored: comparable_config(method, stored)}
    existing = matching_set(out, wanted, comparable)
    if existing is not None:
        log.info("%s already holds this set; reusing it", out)
        return existing
    # Under torchrun rank 0 alone holds the lock and writes; every rank makes its share of the work items.
    with distributed.main_holds(exclusive(out, f"the set {out}")):
        existing = matching_set(out, wanted, comparable)  # another process may have made it meanwhile
        if existing is not None:
            return existing
        workdir = distributed.on_main(lambda: open_workdir(out.with_name(out.name + ".partial"), f"distilled set {out.name}"))
        curves = CurveLog(workdir / "curves")  # in the work directory, so they survive a resume and move with the set
        priors = PriorPool(splits, teachers, teachers.cache_dir, progress, teachers.device)
        result = synthesize(method, options, SynthesisContext(splits, ipc, seed, teachers, progress, teachers.device, workdir,
                                                              priors, curves))
        result.meta["dataset"] = to_dict(dataset)
        if splits.meta:  # what loading found (image folders: unreadable files skipped per split)
            result.meta["dataset_facts"] = splits.meta

        def save() -> None:
            result.save(out, folders={"curves": curves.directory})
            remove_workdir(workdir)

        distributed.on_main(save)
    return result


def run_pipeline(
    config: RunConfig, out: Path, cache_dir: Optional[Path] = None, progress: Optional[Progress] = None,
    device: torch.device = torch.device("cpu"),
) -> Path:
    run = distributed.on_main(lambda: RunDir(out, to_dict(config)))
    with distributed.main_holds(exclusive(run.path, f"the run {out}")):
        return _run_pipeline(config, run, cache_dir, progress, device)


def _run_pipeline(
    config: RunConfig, run: RunDir, cache_dir: Optional[Path], progress: Optional[Progress], device: torch.device,
) -> Path:
    splits = load_dataset(config.dataset)
    teachers = TeacherPool(splits, cache_dir, progress, device, config.teacher_weights)
    students = [model_spec(entry) for entry in config.students] or None
    presets = [load_eval_preset(name, config.eval_teacher) for name in config.eval_presets]
    for method in config.methods:
        for ipc in config.ipcs:
            folder = run / "sets" / set_name(method, ipc)
            distilled = make_set(method, config.method_options.get(method, {}), ipc, config.seed, splits,
                                 config.dataset, teachers, folder, progress)
            # Teachers load collectively on every rank; the measurements are quick and written by rank 0.
            diversity = {n: teachers(n) for n in config.diversity_extractors}
            fidelity = {n: teachers(n) for n in config.fidelity_extractors}
            distributed.on_main(partial(measure_diversity, distilled, folder, splits.train, diversity))
            distributed.on_main(partial(measure_fidelity, distilled, folder, splits.train, splits.test, fidelity))
            for preset in presets:
                evaluate_set(distilled, preset, splits, folder / "eval", students, teachers, progress, device)
    distributed.on_main(lambda: write_report(run.path))
    return run.path
