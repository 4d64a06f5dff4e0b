"""Named YAML presets shipped with the package: presets/<kind>/<name>.yaml."""

from __future__ import annotations

from pathlib import Path

from ddkit.errors import DDKitError

ROOT = Path(__file__).resolve().parent
KINDS = ("eval", "teachers", "runs", "priors", "prompts", "classes")
USED_AS = {
    "eval": "ddkit evaluate --preset NAME",
    "teachers": "ddkit squeeze NAME; teacher=NAME in methods and presets",
    "runs": "ddkit run NAME",
    "priors": "ddkit squeeze-prior NAME; --prior=NAME",
    "prompts": "--prompts.vocabulary=NAME (prism-dfkd, text-diffusion)",
    "classes": "class lists (ImageNet ids) for class maps and prompts",
}


def preset_names(kind: str) -> list[str]:
    return sorted(p.stem for p in (ROOT / kind).glob("*.yaml"))


def preset_path(kind: str, name: str) -> Path:
    path = ROOT / kind / f"{name}.yaml"
    if name not in preset_names(kind):
        raise DDKitError(f"unknown {kind} preset {name!r}; choose one of: {', '.join(preset_names(kind))}")
    return path
