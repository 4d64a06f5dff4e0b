"""The smallest Fashion-MNIST prior that meets the bar: ≥ 90 % of samples classified as their
conditioning class by the convnet-bn teacher (issue 4).

    python benchmarks/prior.py --quick                 # 2 tiny priors on 200 images/class (minutes, CPU)
    python benchmarks/prior.py --write                 # the size sweep on the whole training split
    python benchmarks/prior.py --only xxs              # one row (rows can run as parallel processes)
    python benchmarks/prior.py --table-only --write    # collect finished rows into benchmarks/results/prior.md

Every prior is trained by the same code as `ddkit squeeze-prior` (the recipe
`fashion-mnist-unet` with the row's overrides), so the chosen row's entry is exactly what the
command reproduces. Each trained prior is then sampled under a grid of (sampling steps, CFG
scale), 100 samples per class each, and the teacher's agreement is measured for every cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from ddkit.config import to_dict
from ddkit.data import DatasetConfig, load_dataset
from ddkit.devices import device_label, resolve_device
from ddkit.diffusion.sampler import SamplerConfig
from ddkit.diffusion.train import prior_recipe, resolve_prior, teacher_agreement
from ddkit.models.teachers import TeacherPool
from ddkit.progress import make_progress
from ddkit.runs import atomic_write_json, atomic_write_text, environment, read_json

SWEEP = {
    "default": {},  # the shipped recipe itself
    "xs": {"channels": [16, 32, 32], "epochs": 6, "schedule_epochs": 0, "lr": 2e-3, "ema_decay": 0.998},
}
QUICK = {"quick-a": {"channels": [8, 16], "epochs": 1}, "quick-b": {"channels": [16, 32], "epochs": 1}}
QUICK_PER_CLASS, PER_CLASS = 20, 50
GRID = [(steps, cfg) for steps in (10, 25, 50) for cfg in (1.0, 2.0)]
QUICK_GRID = [(10, 1.0), (10, 2.0)]


def run_row(name: str, overrides: dict, splits, cache: Path, out: Path, grid, per_class: int, device) -> dict:
    path = out / f"{name}.json"
    if path.exists():
        return read_json(path)
    recipe = prior_recipe("fashion-mnist-unet", overrides)
    with make_progress() as progress:
        teachers = TeacherPool(splits, cache, progress, device)
        prior = resolve_prior(recipe, splits, teachers, cache, progress, device)
        cells = []
        for steps, cfg in grid:
            started = time.perf_counter()
            sampler = SamplerConfig(steps=steps, cfg_scale=cfg)
            found = teacher_agreement(prior, teachers(recipe.check_teacher), splits.train.num_classes,
                                      splits.train.image_shape, per_class, sampler, seed=1)
            cells.append({"steps": steps, "cfg": cfg, "agreement": found["teacher_agreement"],
                          "seconds_per_image": round((time.perf_counter() - started) / (per_class * splits.train.num_classes), 5)})
    row = {"name": name, "overrides": overrides, "channels": recipe.channels, "epochs": recipe.epochs,
           "entry": Path(prior.meta["source"]).name, "metrics": prior.meta["metrics"], "cells": cells,
           "device": device_label(device), "environment": environment()}
    atomic_write_json(path, row)
    return row


def table(rows: list[dict], grid) -> str:
    head = ("| prior | channels | epochs | parameters | trained on | train s | "
            + " | ".join(f"{s} st, cfg {c:g}" for s, c in grid) + " | sampled on |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        metrics = row["metrics"]
        cells = {(c["steps"], c["cfg"]): c["agreement"] for c in row["cells"]}
        lines.append(f"| {row['name']} | {row['channels']} | {row['epochs']} | {metrics['parameters']:,} | "
                     f"{', '.join(metrics.get('train_devices', []))} | {metrics['train_seconds']:.0f} | "
                     + " | ".join(f"{cells.get(k, float('nan')):.1f}" for k in grid)
                     + f" | {row['device']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default=None, help="one sweep row")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    sweep, grid = (QUICK, QUICK_GRID) if args.quick else (SWEEP, GRID)
    out = args.out or Path("benchmarks/runs") / ("prior-quick" if args.quick else "prior")
    out.mkdir(parents=True, exist_ok=True)
    data = DatasetConfig(train_per_class=200) if args.quick else DatasetConfig()
    names = [args.only] if args.only else list(sweep)
    if not args.table_only:
        splits = load_dataset(data)
        device = resolve_device(args.device)
        for name in names:
            run_row(name, sweep[name], splits, args.cache, out, grid, QUICK_PER_CLASS if args.quick else PER_CLASS, device)
    rows = [read_json(out / f"{n}.json") for n in sweep if (out / f"{n}.json").exists()]
    text = table(rows, grid)
    print(text)
    if args.write:
        env = environment()
        header = (f"# Fashion-MNIST prior size sweep\n\n{time.strftime('%Y-%m-%d')} · ddkit {env['ddkit']} · torch "
                  f"{rows[0]['environment']['torch'] if rows else torch.__version__} · dataset {to_dict(data)}\n\n"
                  f"Command: `python {' '.join(sys.argv)}`.\n\n"
                  f"Cells: % of {PER_CLASS} samples per class (DDIM, the given steps and CFG scale) that the convnet-bn "
                  "teacher (91.89 % on real test images) assigns to their conditioning class.\n\n")
        atomic_write_text(Path("benchmarks/results/prior.md"), header + text + "\n")


if __name__ == "__main__":
    main()
