"""Sets made for soft labels on Fashion-MNIST (issue 14): RDED's teacher-typical crops and herding's
variants against herding, the coreset that leads under soft-kd.

    python benchmarks/kd_sets.py --choose          # RDED's and herding's settings on the validation split (soft-kd, one student)
    python benchmarks/kd_sets.py                   # soft-kd + hard-dsa, 3 student seeds, IPC 10 (about 20 min on 1 thread)
    python benchmarks/kd_sets.py --quick           # quick presets, IPC 10

Runs accumulate in benchmarks/runs/kd-sets[-quick] and resume; `--write` puts the table in
benchmarks/results/kd-sets.md (or kd-sets-choose.md), grids in benchmarks/results/kd-sets-grids/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from validation import make_and_evaluate, validation_scores  # benchmarks/validation.py

from ddkit.devices import device_label, resolve_device
from ddkit.report.figures import save_grid
from ddkit.runs import atomic_write_text, environment, read_json

TEACHER_DM = {"init": "kernel-herding", "embedding": "convnet-bn", "iterations": 200}
# herding's rows: baselines.md. `rded-whole-band0.9`: whole real images from the 90 % point of the
# teacher's cross-entropy order, the best RDED choice on the validation split; `herding-rbf`: kernel
# herding, the best herding choice there; `herding-rbf-convnet-in`: the same in the features of the
# instance-norm ConvNet teacher, the best feature space there (issue 14). `herding`: the baseline re-run
# beside them; `dm-teacher-means-kernel-herding`: DM from kernel herding in the soft-kd teacher's frozen
# features, the best candidate on the validation split (3 students each).
VARIANTS = {"rded": ("rded", {}), "rded-whole-band0.9": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1, "band": 0.9}),
            "herding-rbf": ("herding", {"kernel": "rbf"}),
            "herding-rbf-convnet-in": ("herding", {"kernel": "rbf", "teacher": "convnet-in"}),
            "herding": ("herding", {}),
            "dm-teacher-means-kernel-herding": ("dm", {**TEACHER_DM, "kernel": "linear", "lr": 1.0, "iterations": 500})}
# RDED's choices at 28 px, scored under soft-kd on the validation split: the released CIFAR-10
# ConvNet setting (factor 1, crops of 8–100 % of the area), 2 × 2 tiles (the ImageNet setting),
# and larger crops only (a 28-px garment is small already).
CANDIDATES = {
    "herding": ("herding", {}),
    "rded": ("rded", {}),
    "rded factor 2": ("rded", {"factor": 2}),
    "rded crops 50-100%": ("rded", {"crop_scale": [0.5, 1.0]}),
    "rded whole images": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1}),
    # issue 14: less typical images, for a student that learns from the teacher's soft labels
    "whole images, median band": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1, "band": 0.5}),
    "whole images, band 0.9": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1, "band": 0.9}),
    "whole images, band 0.8": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1, "band": 0.8}),
    "whole images, band 1": ("rded", {"crop_scale": [1.0, 1.0], "crops": 1, "band": 1.0}),
    "rded, band 0.9": ("rded", {"band": 0.9}),
    "rded, median band": ("rded", {"band": 0.5}),
    # issue 14: herding that matches more than the class mean, or the teacher's soft labels
    "herding, rbf kernel": ("herding", {"kernel": "rbf"}),
    "herding, soft labels": ("herding", {"space": "soft-labels"}),
    "herding, soft labels, rbf kernel": ("herding", {"space": "soft-labels", "kernel": "rbf"}),
    "herding, rbf kernel, bandwidth 0.25": ("herding", {"kernel": "rbf", "bandwidth": 0.25}),
    "herding, rbf kernel, bandwidth 4": ("herding", {"kernel": "rbf", "bandwidth": 4.0}),
    # issue 14: kernel herding in the feature space of a teacher other than the soft-kd one
    "herding, rbf kernel, convnet-in features": ("herding", {"kernel": "rbf", "teacher": "convnet-in"}),
    "herding, rbf kernel, resnet features": ("herding", {"kernel": "rbf", "teacher": "resnet"}),
    "herding, rbf kernel, mobilenet features": ("herding", {"kernel": "rbf", "teacher": "mobilenet"}),
    # issue 14: kernel herding carried into the pixels, DM from it in the soft-kd teacher's frozen features
    "dm from kernel herding, teacher features, rbf, lr 10": ("dm", {**TEACHER_DM, "kernel": "rbf", "lr": 10.0}),
    "dm from kernel herding, teacher features, rbf, lr 100": ("dm", {**TEACHER_DM, "kernel": "rbf", "lr": 100.0}),
    "dm from kernel herding, teacher features, means": ("dm", {**TEACHER_DM, "kernel": "linear", "lr": 1.0}),
    "dm from kernel herding, teacher features, means, 500 iterations": ("dm", {**TEACHER_DM, "kernel": "linear", "lr": 1.0, "iterations": 500}),
    "dm from kernel herding, teacher features, rbf, lr 100, 500 iterations": ("dm", {**TEACHER_DM, "kernel": "rbf", "lr": 100.0, "iterations": 500}),
}


def stamp(device: torch.device) -> str:
    env = environment()
    return (f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
            f"{env['threads']} CPU threads, device {device_label(device)}. Command: `python benchmarks/kd_sets.py {' '.join(sys.argv[1:])}`.")


def accuracy_runs(out: Path, presets: list[str], ipcs: list[int], variants: list[str], device: torch.device) -> None:
    make_and_evaluate([(out / "sets" / f"{variant}-ipc{ipc}", *VARIANTS[variant], ipc, 0) for ipc in ipcs for variant in variants],
                      presets, device)


def accuracy_table(out: Path, presets: list[str], ipcs: list[int]) -> str:
    lines = ["| set | IPC | " + " | ".join(presets) + " |", "|" + "---|" * (len(presets) + 2)]
    for ipc in ipcs:
        for variant in VARIANTS:
            cells = []
            for preset in presets:
                summaries = list((out / "sets" / f"{variant}-ipc{ipc}" / "eval" / preset).glob("*/summary.json"))
                summary = read_json(summaries[0]) if summaries else None
                cells.append(f"{summary['mean']:.2f} ± {summary['std']:.2f}" if summary else "not run")
            lines.append(f"| {variant} | {ipc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_grids(out: Path, ipc: int = 10) -> None:
    from ddkit.data.distilled import DistilledSet

    for variant in VARIANTS:
        folder = out / "sets" / f"{variant}-ipc{ipc}"
        if (folder / "manifest.json").exists():
            save_grid(DistilledSet.load(folder), Path("benchmarks/results/kd-sets-grids") / f"{variant}.png", f"{variant}, IPC {ipc}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--choose", action="store_true")
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES), help="with --choose: score only these")
    parser.add_argument("--val-seeds", type=int, nargs="+", default=[0], help="with --choose: student seeds per candidate")
    parser.add_argument("--ipcs", type=int, nargs="+", default=[10])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--presets", nargs="+", default=None, help="evaluation presets (default: soft-kd hard-dsa)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.choose:
        chosen = {name: CANDIDATES[name] for name in args.candidates}
        report = "\n".join(["# Sets for soft labels at 28 px: RDED's and herding's settings on the validation split", "", stamp(device), "",
                            validation_scores(chosen, Path("benchmarks/runs/kd-sets-choose"), device, "soft-kd", tuple(args.val_seeds)), ""])
        print(report)
        if args.write:
            atomic_write_text(Path("benchmarks/results/kd-sets-choose.md"), report)
        return
    presets = args.presets or (["soft-kd-quick", "hard-dsa-quick"] if args.quick else ["soft-kd", "hard-dsa"])
    out = args.out or Path("benchmarks/runs") / ("kd-sets-quick" if args.quick else "kd-sets")
    if not args.table_only:
        accuracy_runs(out, presets, args.ipcs, args.variants, device)
    report = "\n".join([
        "# Sets made for soft labels on Fashion-MNIST", "", stamp(device), "",
        "Test top-1 (%), mean ± population std over student seeds 0, 1, 2 (sets made once, seed 0), final epoch, "
        "ConvNet-3 student, the frozen presets.", "", accuracy_table(out, presets, args.ipcs), ""])
    print(report)
    if args.write:
        atomic_write_text(Path("benchmarks/results/kd-sets.md"), report)
        write_grids(out)


if __name__ == "__main__":
    main()
