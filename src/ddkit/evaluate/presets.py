"""Named, frozen evaluation presets (presets/eval/<name>.yaml).

A preset fixes the student, optimiser, schedule, epochs, augmentation, label mode, teacher and
seeds. Every stored number carries the preset's name and the hash of its resolved content, so a
result is never silently reused after a preset changes. Nothing here looks at the test split to
choose anything: the test split is only scored, once per trained student, at its final epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

from ddkit.config import ADDED_OPTION, build, hash_dict, load_yaml
from ddkit.errors import DDKitError
from ddkit.models import ModelSpec
from ddkit.presets import preset_path
from ddkit.runs import config_hash
from ddkit.training import TrainRecipe


@dataclass(frozen=True)
class EvalPreset:
    name: str
    description: str
    student: ModelSpec
    train: TrainRecipe
    # soft-set: the set's own per-image soft labels (e.g. imported from another tool's relabel), no teacher
    labels: Literal["hard", "soft-online", "soft-stored", "soft-set"] = "hard"
    teacher: Optional[str] = None  # teacher recipe for soft labels, or an ensemble "a+b+c"; part of the preset
    # how an ensemble's logits are put on one scale before averaging (ddkit.models.ensemble)
    ensemble_rescale: Literal["per-image", "per-batch"] = field(default="per-image", metadata=ADDED_OPTION)
    temperature: float = 4.0
    loss: Literal["kl", "mse-ce"] = "kl"  # soft labels: KL at T, or MSE to the logits + ce_weight·CE (PRISM's recipe)
    ce_weight: float = 0.1
    stored_top_k: int = 2  # soft-stored: classes kept per image and epoch
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_subset: Optional[int] = None  # quick presets score a fixed class-balanced part of test
    shifts: list[str] = field(default_factory=list, metadata=ADDED_OPTION)  # also score on shifted test copies (ddkit.data.shifts)
    quick: bool = False

    def __post_init__(self) -> None:
        if self.uses_teacher and not self.teacher:
            raise ValueError(f"preset {self.name}: soft labels need a teacher")
        if self.labels == "soft-set" and self.teacher:
            raise ValueError(f"preset {self.name}: soft-set learns from the set's own soft labels; remove the teacher")
        if self.labels in ("soft-stored", "soft-set") and self.loss != "kl":
            raise ValueError(f"preset {self.name}: stored soft labels keep probabilities, so they need loss: kl")
        if self.labels == "soft-set" and self.train.mix != "none":
            raise ValueError(f"preset {self.name}: soft-set labels cannot follow CutMix; set train.mix: none")
        if self.stored_top_k < 1:
            raise ValueError(f"preset {self.name}: stored_top_k must be at least 1")
        if len(self.seeds) < 1:
            raise ValueError(f"preset {self.name}: needs at least one seed")

    @property
    def uses_teacher(self) -> bool:
        return self.labels in ("soft-online", "soft-stored")

    @property
    def fingerprint(self) -> str:
        return config_hash(hash_dict(self))


def eval_preset_path(name: str) -> Path:
    """A shipped preset by name, or the user's own YAML file."""
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise DDKitError(f"evaluation preset file {name} does not exist")
        return Path(name)
    return preset_path("eval", name)


def load_eval_preset(name: str, teacher: Optional[str] = None) -> EvalPreset:
    """The preset `name` (shipped or a file). `teacher` replaces a soft-label preset's default teacher,
    so one protocol serves any dataset; the preset is then named `name@teacher`, and its fingerprint
    (which holds the teacher) keeps its results apart from the default's."""
    path = eval_preset_path(name)
    label = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    try:
        preset = build(EvalPreset, {"name": label, **load_yaml(path)})
    except DDKitError as err:
        raise DDKitError(f"evaluation preset {name}: {err}") from None
    if teacher and preset.uses_teacher and teacher != preset.teacher:
        preset = replace(preset, name=f"{label}@{teacher}", teacher=teacher)
    return preset
