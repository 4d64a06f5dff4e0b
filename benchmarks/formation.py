"""Multi-formation on Fashion-MNIST (issue 14): sets whose stored images each hold 2 × 2 (or 4 × 4)
half- (quarter-) resolution tiles (IDC's parameterisation, the `factor` option of random, herding,
dm and dc), against the same methods at factor 1, side by side in one run; and seed methods that
continue a DM set (PRISM from it, `init=set`; plain diffusion and DAP from it by SDEdit, `init_set`).

    python benchmarks/formation.py            # every variant: hard-dsa + soft-kd, 3 student seeds
    python benchmarks/formation.py --quick    # the quick presets, IPC 10 coresets only

Each student is scored on the validation split and the test split: a pick between variants is made
on the validation column, the test column only reports. Runs accumulate in benchmarks/runs/formation
and resume; `--write` puts the table in benchmarks/results/formation.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from validation import make_and_evaluate  # benchmarks/validation.py

from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.distilled import DistilledSet
from ddkit.devices import device_label, resolve_device
from ddkit.evaluate import load_eval_preset
from ddkit.methods.base import resolve_config
from ddkit.models.teachers import TeacherPool
from ddkit.report.figures import save_grid
from ddkit.runs import atomic_write_text, environment, read_json

KH = {"init": "kernel-herding"}
TEACHER_DM = {**KH, "embedding": "convnet-bn", "lr": 1.0, "iterations": 500}  # kd_sets.py's validation pick
TEACHER_DM_F2 = {**TEACHER_DM, "factor": 2, "iterations": 1000}
IDC = {**KH, "factor": 2, "real_batches": 2}  # IDC: dc at factor 2, the network trained on real batches between matching steps
SET_OF = "set of: "  # an option value naming another variant: that variant's set in this run's folder


DM_KH = "dm from kernel herding, 1000 it"
PRISM_FROM_DM = {"init": "set", "init_set": SET_OF + DM_KH}  # PRISM continues the DM set (made, or carried, in the same run folder)
SDEDIT_FROM_DM = {"init_set": SET_OF + DM_KH, "init_strength": 0.5}  # the DM set noised to half the schedule, then sampled
SOFT_KD_PICK = "dm from kernel herding, teacher features, factor 2, 1000 it, lr 2"  # the best soft-kd set on validation
PRISM_TILES = {"factor": 2, "iterations": 50}  # PRISM on the decoded tiles of factor-2 stored images
DM_KH_F2 = "dm from kernel herding, factor 2, 1000 it"  # the best hard-dsa set
DSA_KH_F2 = "dsa from kernel herding, factor 2, 15 it"


def prism_tiles_from(variant: str, **options) -> dict:
    """PRISM's options for 50 steps on the tiles of another factor-2 variant's set."""
    return {**PRISM_TILES, "init": "set", "init_set": SET_OF + variant, **options}


# name -> (method, options, IPC, set seed). Random draws are three sets (a random baseline is a mean over draws).
VARIANTS: dict[str, tuple[str, dict, int, int]] = {
    "herding": ("herding", {}, 10, 0),
    "kernel herding": ("herding", {"kernel": "rbf"}, 10, 0),
    DM_KH: ("dm", {**KH, "iterations": 1000}, 10, 0),
    "dm from kernel herding, teacher features, 500 it": ("dm", TEACHER_DM, 10, 0),
    **{f"random, factor 2, draw {seed}": ("random", {"factor": 2}, 10, seed) for seed in range(3)},
    "herding, factor 2": ("herding", {"factor": 2}, 10, 0),
    "kernel herding, factor 2": ("herding", {"kernel": "rbf", "factor": 2}, 10, 0),
    "kernel herding, factor 4": ("herding", {"kernel": "rbf", "factor": 4}, 10, 0),
    DM_KH_F2: ("dm", {**KH, "iterations": 1000, "factor": 2}, 10, 0),
    "dm from kernel herding, teacher features, factor 2, 500 it": ("dm", {**TEACHER_DM, "factor": 2}, 10, 0),
    "dm from kernel herding, teacher features, factor 2, 1000 it": ("dm", {**TEACHER_DM, "factor": 2, "iterations": 1000}, 10, 0),
    "dm from kernel herding, teacher features, factor 2, 2000 it": ("dm", {**TEACHER_DM, "factor": 2, "iterations": 2000}, 10, 0),
    SOFT_KD_PICK: ("dm", {**TEACHER_DM_F2, "lr": 2.0}, 10, 0),
    "dm from kernel herding, teacher features, rbf, factor 2, 1000 it": ("dm", {**TEACHER_DM_F2, "kernel": "rbf"}, 10, 0),
    "dm from kernel herding, teacher features, factor 2, 1000 it, set seed 1": ("dm", TEACHER_DM_F2, 10, 1),
    **{f"dm from kernel herding, teacher features, factor 2, 1000 it, lr 2, set seed {seed}": ("dm", {**TEACHER_DM_F2, "lr": 2.0}, 10, seed)
       for seed in (1, 2)},
    DSA_KH_F2: ("dc", {**KH, "factor": 2, "iterations": 15}, 10, 0),
    "idm from kernel herding, 1000 it": ("idm", {**KH, "iterations": 1000}, 10, 0),  # factor 2, its default
    "idm from kernel herding, 1000 it, lr 1": ("idm", {**KH, "iterations": 1000, "lr": 1.0}, 10, 0),  # IDM at DM's lr: its cross-entropy is the rest
    f"{DM_KH_F2}, trained pool": ("dm", {**KH, "iterations": 1000, "factor": 2, "pool_networks": 3}, 10, 0),  # IDM's pool alone, at DM's lr
    **{f"{DM_KH_F2}, lr {lr:g}": ("dm", {**KH, "iterations": 1000, "factor": 2, "lr": lr}, 10, 0) for lr in (0.2, 2.0)},  # IDM's lr alone, and 2
    "idc from kernel herding, 60 it": ("dc", {**IDC, "iterations": 60}, 10, 0),
    "idc from kernel herding, 120 it": ("dc", {**IDC, "iterations": 120}, 10, 0),
    "idc from kernel herding, 50 steps per network, 12 it": ("dc", {**IDC, "outer_loop": 50, "iterations": 12}, 10, 0),
    f"prism from {DM_KH}": ("prism", PRISM_FROM_DM, 10, 0),
    f"prism from {DM_KH}, 50 it": ("prism", {**PRISM_FROM_DM, "iterations": 50}, 10, 0),
    "prism from kernel herding, 50 it": ("prism", {**KH, "iterations": 50}, 10, 0),
    "prism's random real start": ("prism", {"iterations": 1, "lr": 1e-9}, 10, 0),  # one step at lr 1e-9: the start images themselves
    **{f"prism, {steps} it": ("prism", {"iterations": steps}, 10, 0) for steps in (25, 50, 100, 200)},
    f"prism from {SOFT_KD_PICK}, factor 2, 50 it": ("prism", prism_tiles_from(SOFT_KD_PICK), 10, 0),
    "prism from kernel herding, factor 2, 50 it": ("prism", {**PRISM_TILES, **KH}, 10, 0),
    f"prism from {DM_KH_F2}, factor 2, 50 it": ("prism", prism_tiles_from(DM_KH_F2), 10, 0),
    f"prism from {DSA_KH_F2}, factor 2, 50 it": ("prism", prism_tiles_from(DSA_KH_F2), 10, 0),
    f"prism from {DM_KH_F2}, factor 2, 50 it, r_bn 0": ("prism", prism_tiles_from(DM_KH_F2, r_bn=0.0), 10, 0),
    f"diffusion from {DM_KH}, strength 0.5": ("diffusion", SDEDIT_FROM_DM, 10, 0),
    f"dap from {DM_KH}, strength 0.5": ("dap", SDEDIT_FROM_DM, 10, 0),
    "kernel herding, IPC 50": ("herding", {"kernel": "rbf"}, 50, 0),
    "kernel herding, factor 2, IPC 50": ("herding", {"kernel": "rbf", "factor": 2}, 50, 0),
    "dm from kernel herding, factor 2, 1000 it, IPC 50": ("dm", {**KH, "iterations": 1000, "factor": 2}, 50, 0),
}
QUICK = ["herding", "kernel herding", "herding, factor 2", "kernel herding, factor 2"]


def folder_of(out: Path, variant: str) -> Path:
    return out / "sets" / variant.replace(", ", "-").replace(" ", "_")


def in_run(options: dict, out: Path) -> dict:
    """`options` with each reference to another variant's set replaced by that set's folder under `out`."""
    return {key: str(folder_of(out, value.removeprefix(SET_OF))) if isinstance(value, str) and value.startswith(SET_OF) else value
            for key, value in options.items()}


def run(out: Path, presets: list[str], variants: list[str], device: torch.device) -> None:
    jobs = []
    for variant in variants:
        method, options, ipc, seed = VARIANTS[variant]
        jobs.append((folder_of(out, variant), method, in_run(options, out), ipc, seed))
    make_and_evaluate(jobs, presets, device)


def cell(folder: Path, preset: str, key: str) -> str:
    found = list((folder / "eval" / preset).glob("*/summary.json"))
    summary = read_json(found[0]) if found else {}
    if key == "val_mean":
        return f"{summary['val_mean']:.2f}" if summary.get("val_mean") is not None else "–"
    return f"{summary['mean']:.2f} ± {summary['std']:.2f}" if summary else "not run"


def teacher_agreement(folder: Path, teacher: torch.nn.Module) -> str:
    """How often the soft-kd teacher names the set's own class on the decoded images: a soft-label
    student learns the teacher's reading of them, so a set it cannot read teaches little."""
    if not (folder / "manifest.json").exists():
        return "–"
    decoded = DistilledSet.load(folder).decoded()
    with torch.no_grad():
        agree = (teacher(decoded.images).argmax(1) == decoded.labels).float().mean()
    return f"{100 * float(agree):.1f}"


def table(out: Path, presets: list[str], teacher: torch.nn.Module) -> str:
    presets = [load_eval_preset(p).name for p in presets]  # a preset given as a YAML file is stored under its name
    header = [f"val {p}" for p in presets] + [f"test {p}" for p in presets] + ["teacher agrees (%)"]
    lines = ["| set | IPC | stored / decoded per class | " + " | ".join(header) + " |", "|" + "---|" * (len(header) + 3)]
    for variant, (method, options, ipc, _) in VARIANTS.items():
        folder = folder_of(out, variant)
        factor = getattr(resolve_config(method, in_run(options, out)), "factor", 1)  # a method's own default counts too (idm: 2)
        cells = [cell(folder, p, "val_mean") for p in presets] + [cell(folder, p, "mean") for p in presets]
        lines.append(f"| {variant} | {ipc} | {ipc} / {ipc * factor**2} | " + " | ".join(cells) + f" | {teacher_agreement(folder, teacher)} |")
    return "\n".join(lines)


def write_grids(out: Path) -> None:
    for variant in VARIANTS:
        folder = folder_of(out, variant)
        if (folder / "manifest.json").exists():
            name = folder.name
            save_grid(DistilledSet.load(folder), Path("benchmarks/results/formation-grids") / f"{name}.png", variant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--presets", nargs="+", default=None, help="evaluation presets, by name or YAML file (default: hard-dsa soft-kd)")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    presets = args.presets or (["hard-dsa-quick", "soft-kd-quick"] if args.quick else ["hard-dsa", "soft-kd"])
    out = args.out or Path("benchmarks/runs") / ("formation-quick" if args.quick else "formation")
    if not args.table_only:
        run(out, presets, args.variants or (QUICK if args.quick else list(VARIANTS)), device)
    report = report_text(out, presets, device)
    print(report)
    if args.write:
        atomic_write_text(Path("benchmarks/results/formation.md"), report)
        write_grids(out)


def report_text(out: Path, presets: list[str], device: torch.device) -> str:
    env = environment()
    teacher = TeacherPool(load_dataset(DatasetConfig()), device=torch.device("cpu"))(load_eval_preset("soft-kd").teacher).model.eval()
    return "\n".join([
        "# Multi-formation sets on Fashion-MNIST", "",
        f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, device "
        f"{device_label(device)}. Command: `python benchmarks/formation.py {' '.join(sys.argv[1:])}`.", "",
        "Top-1 (%) of ConvNet-3 students trained on the decoded set, 3 student seeds (0, 1, 2) per set, final epoch, "
        "the frozen presets; the same students scored on the validation split (mean) and the test split (mean ± "
        "population std). Teacher agrees: the soft-kd teacher's top-1 on the decoded images against the set's labels.",
        "", table(out, presets, teacher), ""])


if __name__ == "__main__":
    main()
