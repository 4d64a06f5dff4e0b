"""Named, frozen evaluation presets (presets/eval/<name>.yaml).

A preset fixes the student, optimiser, schedule, epochs, augmentation, label mode, teacher and
seeds. Every stored number carries the preset's name and the hash of its resolved content, so a
result is never silently reused after a preset changes. Nothing here looks at the test split to
choose anything: the test split is only scored, once per trained student, at its final epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ddkit.config import build, load_yaml, to_dict
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
    labels: Literal["hard", "soft-online"] = "hard"
    teacher: Optional[str] = None  # teacher recipe for soft labels; part of the preset
    temperature: float = 4.0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    test_subset: Optional[int] = None  # quick presets score a fixed class-balanced part of test
    quick: bool = False

    def __post_init__(self) -> None:
        if self.labels != "hard" and not self.teacher:
            raise ValueError(f"preset {self.name}: soft labels need a teacher")
        if len(self.seeds) < 1:
            raise ValueError(f"preset {self.name}: needs at least one seed")

    @property
    def fingerprint(self) -> str:
        return config_hash(to_dict(self))


def load_eval_preset(name: str) -> EvalPreset:
    try:
        return build(EvalPreset, {"name": name, **load_yaml(preset_path("eval", name))})
    except DDKitError as err:
        raise DDKitError(f"evaluation preset {name}: {err}") from None
