"""Coreset baselines on Fashion-MNIST beside the published numbers (reference-numbers.md).

    python benchmarks/baselines.py --quick     # quick presets, IPC 1 and 10 (minutes)
    python benchmarks/baselines.py             # hard-dsa + soft-kd, IPC 1/10/50, 3 seeds, whole data (hours)

Results accumulate in a run directory (default benchmarks/runs/baselines[-quick]); re-running
resumes where it stopped. The table goes to stdout and, with --write, to
benchmarks/results/baselines.md with the date, versions and command.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from ddkit.config import to_dict
from ddkit.data import DatasetConfig, load_dataset
from ddkit.devices import device_label, resolve_device
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.models import build_model
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set, set_name
from ddkit.progress import make_progress
from ddkit.runs import atomic_write_json, atomic_write_text, environment, read_json
from ddkit.training import accuracy, fit

# DC paper (Zhao et al. 2021), ConvNet-3, hard labels; "unverified" in reference-numbers.md.
PUBLISHED = {"random": {1: 51.4, 10: 73.8, 50: 82.5}, "herding": {1: 67.0, 10: 71.1, 50: 71.9},
             "kcenter": {1: 66.9, 10: 54.7, 50: 68.3}}
PUBLISHED_WHOLE = 93.5
METHODS = ("random", "herding", "kcenter")


def whole_result_path(out: Path, preset_name: str, epochs: int) -> Path:
    return out / f"whole-{preset_name}-{epochs}ep.json"


def whole_dataset(splits, preset_name: str, epochs: int, out: Path, progress, device) -> None:
    """ConvNet-3 on the whole training split with the preset's recipe, `epochs` epochs (resumable)."""
    path = whole_result_path(out, preset_name, epochs)
    if path.exists():
        return
    resume = path.with_suffix(".resume.pt")
    preset = load_eval_preset(preset_name)
    recipe = replace(preset.train, epochs=epochs)
    model = build_model(preset.student, splits.train.num_classes, splits.train.image_shape, splits.train.mean, splits.train.std, seed=0).to(device)
    started = time.perf_counter()
    fit(model, splits.train, recipe, seed=0, progress=progress, description=f"whole dataset ({epochs} epochs)", checkpoint=resume)
    result = {"preset": preset_name, "recipe": to_dict(recipe), "epochs": epochs, "seed": 0,
              "train_images": len(splits.train), "seconds": round(time.perf_counter() - started),
              "val_accuracy": round(accuracy(model, splits.val), 2), "test_accuracy": round(accuracy(model, splits.test), 2),
              "device": device_label(device)}
    atomic_write_json(path, result)
    resume.unlink(missing_ok=True)


def table(out: Path, presets: list[str], ipcs: list[int], whole: dict | None) -> str:
    lines = ["| method | IPC | " + " | ".join(presets) + " | published (DC, hard) | device |", "|---|---|" + "---|" * (len(presets) + 2)]
    for method in METHODS:
        for ipc in ipcs:
            cells, devices = [], set()
            for preset in presets:
                folder = out / "sets" / set_name(method, ipc) / "eval" / preset
                summaries = list(folder.glob("*/summary.json"))
                cells.append(f"{read_json(summaries[0])['mean']:.2f} ± {read_json(summaries[0])['std']:.2f}" if summaries else "not run")
                devices |= {read_json(p).get("device", "cpu") for p in folder.glob("*/seed-*.json")}  # older files: CPU
            lines.append(f"| {method} | {ipc} | " + " | ".join(cells) + f" | {PUBLISHED[method].get(ipc, '–')} | {', '.join(sorted(devices))} |")
    if whole:
        lines.append(f"| whole training split ({whole['train_images']} images, {whole['epochs']} epochs, seed 0, "
                     f"{whole['seconds'] // 60} min) | – | {whole['test_accuracy']:.2f} (hard-dsa recipe) | "
                     + " | ".join("–" for _ in presets[1:]) + f" | {PUBLISHED_WHOLE} | {whole.get('device', 'cpu')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quick presets, IPC 1 and 10, no whole-dataset run")
    parser.add_argument("--ipcs", type=int, nargs="+", default=None)
    parser.add_argument("--whole-epochs", type=int, default=15, help="epochs of the whole-dataset run (about 2 min each)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/baselines.md")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--table-only", action="store_true", help="print the table of what the run directory holds; train nothing")
    args = parser.parse_args()

    presets = ["hard-dsa-quick", "soft-kd-quick"] if args.quick else ["hard-dsa", "soft-kd"]
    ipcs = args.ipcs or ([1, 10] if args.quick else [1, 10, 50])
    out = args.out or Path("benchmarks/runs") / ("baselines-quick" if args.quick else "baselines")
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    whole_path = whole_result_path(out, "hard-dsa", args.whole_epochs)
    with make_progress() as progress:
        device = resolve_device(args.device)
        teachers = TeacherPool(splits, progress=progress, device=device)
        loaded = [load_eval_preset(p) for p in presets]
        for ipc in [] if args.table_only else ipcs:  # cheapest first, so a partial run fills whole rows
            for method in METHODS:
                folder = out / "sets" / set_name(method, ipc)
                distilled = make_set(method, {}, ipc, 0, splits, dataset, teachers, folder, progress)
                for preset in loaded:
                    evaluate_set(distilled, preset, splits, folder / "eval", None, teachers, progress, device)
            if ipc == 10 and not args.quick:
                whole_dataset(splits, "hard-dsa", args.whole_epochs, out, progress, device)
    whole = read_json(whole_path) if whole_path.exists() else None
    teacher = teachers("convnet-bn").info
    env = environment()
    report = "\n".join([
        "# Coreset baselines on Fashion-MNIST",
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
        f"{env['threads']} CPU threads. Command: `python benchmarks/baselines.py {' '.join(sys.argv[1:])}`"
        + (" — a snapshot of the run directory filled by `python benchmarks/baselines.py`; "
           "'not run' cells are still to come (re-running resumes)." if args.table_only else "."),
        "",
        "Test top-1 (%), mean ± population std over seeds 0, 1, 2, final epoch, student ConvNet-3 (width 128, "
        "instance norm). Sets are drawn once (seed 0); the seeds vary the student. "
        f"soft-kd teacher: convnet-bn ({teacher['test_accuracy']:.2f} % test). Published numbers: DC paper, ConvNet-3, "
        "hard labels, 60,000 training images (ours: 55,000; 5,000 are held out for validation).",
        "",
        table(out, presets, ipcs, whole),
        "",
    ])
    print(report)
    if args.write:
        atomic_write_text(Path("benchmarks/results/baselines.md"), report)
        atomic_write_json(out / "environment.json", env)


if __name__ == "__main__":
    main()
