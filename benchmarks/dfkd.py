"""PRISM-DFKD on Fashion-MNIST: data-free transfer sets from the embedded text prior (plain
prompts, +EDA, +DPE, both) against DeepInversion-style inversion and KD on real images (issue 5).

    python benchmarks/dfkd.py --quick                   # dfkd-quick, 100 images, 10 sampling steps
    python benchmarks/dfkd.py --sizes 100 1000          # dfkd preset (3 seeds), 25 DDIM steps
    python benchmarks/dfkd.py --steer                   # do content prompts steer the prior? (attribute shift)
    python benchmarks/dfkd.py --speed                   # s/image with and without EDA
    python benchmarks/dfkd.py --tune                    # EDA scale / objective, chosen on the validation split
    python benchmarks/dfkd.py --table-only --write      # collect the tables into benchmarks/results/dfkd*.md

Every student learns from a transfer set and the convnet-bn teacher's soft outputs only (the
`dfkd` preset: 1,000 KD steps whatever the set size) and is scored on the clean test split and on
five shifted copies of it (ddkit.data.shifts). Prior-based rows share the prior, the sampler and
the initial noise per sample, so they differ only in prompts and guidance. The text prior has seen
the training images (it was trained on them); only the distillation step is data-free.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.shifts import SHIFTS
from ddkit.devices import device_label, resolve_device
from ddkit.diffusion.captions import attribute_measures
from ddkit.diffusion.sampler import SamplerConfig, sample
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.evaluate.fidelity import measure_fidelity
from ddkit.methods import resolve_config
from ddkit.methods.guided_diffusion import WorkItem
from ddkit.methods.prism_dfkd import sample_item
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set
from ddkit.progress import make_progress
from ddkit.prompts.builder import PromptOptions, build_prompts, load_vocabulary
from ddkit.runs import atomic_write_json, atomic_write_text, environment, read_json
from ddkit.seeds import item_seed

BARE_PROMPTS = {"disambiguate": False, "content": False, "style": False}
VARIANTS = {
    "plain prior": ("text-diffusion", {}),
    "+EDA": ("prism-dfkd", {"prompts": BARE_PROMPTS}),
    "+DPE": ("prism-dfkd", {"energy_scale": 0.0, "filter_fraction": 0.0}),
    "PRISM-DFKD (EDA+DPE)": ("prism-dfkd", {}),
    "DeepInversion-style": ("sre2l", {}),
    "real-data KD": ("random", {}),
}
DIFFUSION = ("text-diffusion", "prism-dfkd")
FIDELITY = "convnet-in"  # took no part in synthesis (convnet-bn is the teacher and EDA's energy)


def stamp(device: torch.device) -> str:
    env = environment()
    return (f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
            f"{env['threads']} CPU threads, device {device_label(device)}. Command: `python benchmarks/dfkd.py {' '.join(sys.argv[1:])}`.")


def folder_name(variant: str, size: int) -> str:
    return f"{variant.split(' (')[0].replace(' ', '_').replace('+', 'plus_')}-{size}"


def options_for(method: str, options: dict, steps: int) -> dict:
    return {**options, "sampler": {"steps": steps}} if method in DIFFUSION else options


def accuracy_runs(args, out: Path, device: torch.device) -> None:
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    preset = load_eval_preset(args.preset)
    if args.seeds:
        preset = replace(preset, seeds=args.seeds)
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        extractor = teachers(FIDELITY)
        for size in args.sizes:
            for variant in args.variants:
                method, options = VARIANTS[variant]
                folder = out / "sets" / folder_name(variant, size)
                started = time.perf_counter()
                distilled = make_set(method, options_for(method, options, args.steps), size // splits.train.num_classes, 0,
                                     splits, dataset, teachers, folder, progress)
                if not (folder / "synthesis.json").exists():
                    atomic_write_json(folder / "synthesis.json", {"seconds": round(time.perf_counter() - started, 1),
                                                                  "images": len(distilled), "device": device_label(device)})
                measure_fidelity(distilled, folder, splits.train, splits.test, {FIDELITY: extractor})
                evaluate_set(distilled, preset, splits, folder / "eval", None, teachers, progress, device)


def accuracy_table(out: Path, preset: str, sizes: list[int], variants: list[str]) -> str:
    shifts = list(SHIFTS)
    header = ["variant", "images", "clean top-1", *shifts, "P", "R", "D", "C", "FID", "s / image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for size in sizes:
        for variant in variants:
            folder = out / "sets" / folder_name(variant, size)
            summaries = list((folder / "eval" / preset).glob("*/summary.json"))
            if summaries:
                summary = read_json(summaries[0])
                cells = [f"{summary['mean']:.2f} ± {summary['std']:.2f} (n={len(summary['seeds'])})"]
                cells += [f"{summary['shift_means'][s]:.2f}" for s in shifts]
            else:
                cells = ["not run"] + ["–"] * len(shifts)
            path = folder / "fidelity" / f"{FIDELITY}.json"
            if path.exists():
                record = read_json(path)
                cells += [f"{record[k]:.3f}" for k in ("precision", "recall", "density", "coverage")] + [f"{record['fid']:.2f}"]
            else:
                cells += ["–"] * 5
            timing = folder / "synthesis.json"
            cells.append(f"{read_json(timing)['seconds'] / read_json(timing)['images']:.3f}" if timing.exists() else "–")
            lines.append(f"| {variant} | {size} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def teacher_line(out: Path, preset: str) -> str:
    """The teacher's own clean and shifted accuracy, the ceiling every KD student aims at."""
    path = out / "teacher.json"
    if not path.exists():
        splits = load_dataset(DatasetConfig())
        from ddkit.data.shifts import shifted_sets
        from ddkit.training import accuracy

        teacher = TeacherPool(splits)(load_eval_preset(preset).teacher)
        sets = {"clean": splits.test, **shifted_sets(splits.test, list(SHIFTS))}
        atomic_write_json(path, {name: round(accuracy(teacher.model, data), 2) for name, data in sets.items()})
    record = read_json(path)
    return "Teacher (convnet-bn) on the same test sets: " + ", ".join(f"{k} {v:.2f}" for k, v in record.items())


TUNING = {f"EDA {objective} s{scale}": {"energy_scale": scale, "energy_objective": objective, "filter_fraction": 0.0}
          for objective, scale in (("energy", 0.0), ("energy", 0.1), ("energy", 0.3), ("energy+ce", 0.3), ("energy", 0.03))}
TUNING["EDA energy s0.1 first half"] = {"energy_scale": 0.1, "energy_window": [0.0, 0.5], "filter_fraction": 0.0}
TUNING["EDA energy s0.03 first half"] = {"energy_scale": 0.03, "energy_window": [0.0, 0.5], "filter_fraction": 0.0}


def tune(args, device: torch.device) -> str:
    """100-image sets with the bare prompts; one dfkd student (seed 0) each, scored on the validation split."""
    from ddkit.data.shifts import shifted_sets
    from ddkit.evaluate.students import train_student
    from ddkit.training import accuracy

    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    preset = load_eval_preset("dfkd")
    out = Path("benchmarks/runs/dfkd-tune")
    rows = []
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        extractor = teachers(FIDELITY)
        for name, options in TUNING.items():
            folder = out / name.replace(" ", "_")
            result_path = folder / "val.json"
            if not result_path.exists():
                distilled = make_set("text-diffusion", options_for("text-diffusion", options, args.steps), 10, 0, splits,
                                     dataset, teachers, folder, progress)
                model = train_student(distilled.as_image_set(), preset, preset.student, 0, teachers(preset.teacher), progress, device)
                fidelity = measure_fidelity(distilled, folder, splits.train, splits.val, {FIDELITY: extractor})[0]
                shifted = shifted_sets(splits.val, list(SHIFTS))
                atomic_write_json(result_path, {"val_accuracy": round(accuracy(model, splits.val), 2),
                                                "val_shift_mean": round(statistics.fmean(accuracy(model, d) for d in shifted.values()), 2),
                                                "precision": fidelity["precision"], "recall": fidelity["recall"]})
            r = read_json(result_path)
            rows.append(f"| {name} | {r['val_accuracy']:.2f} | {r['val_shift_mean']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} |")
    return "\n".join([f"Bare prompts, 100 images, DDIM {args.steps} steps; one dfkd student (seed 0) per candidate, scored on "
                      "the validation split (5,000 training images held out) and its shifted copies; P/R against validation "
                      f"images in {FIDELITY} features.", "",
                      "| candidate | val top-1 | val shifted (mean of 5) | P | R |", "|---|---|---|---|---|", *rows])


def steer(args, device: torch.device) -> str:
    """For each class and attribute axis: samples for the low-word and the high-word prompt from the
    same initial noise; the image measure the captions were cut on, averaged, and how often the
    high-word sample measures higher than its low-word twin."""
    from ddkit.diffusion.train import resolve_prior

    splits = load_dataset(DatasetConfig())
    prior = resolve_prior("fashion-mnist-text-unet", splits, TeacherPool(splits, device=device), device=device)
    vocab = load_vocabulary("fashion-mnist")
    attributes = {"brightness": ("dark", "bright"), "size": ("small", "large"), "texture": ("plain", "patterned")}
    sampler = SamplerConfig(steps=args.steps)
    rows = ["| attribute | prompt pair | low-word mean | high-word mean | pairs ordered as prompted |", "|---|---|---|---|---|"]
    for axis, (low, high) in attributes.items():
        samples = {low: [], high: []}
        for c, class_name in enumerate(splits.train.class_names):
            name = vocab.display_name(class_name)
            for word in (low, high):
                article = "an" if word[0] in "aeiou" else "a"
                generator = torch.Generator().manual_seed(item_seed("steer", c))
                cond = prior.prompt_condition([f"a photo of {article} {word} {name}"] * args.steer_per_prompt)
                samples[word].append(prior.decode(sample(prior, cond, generator, sampler), splits.train.image_shape))
        if axis == "brightness":
            save_steer_grid(samples[low], samples[high], splits.train.class_names, low, high)
        low_all, high_all = (attribute_measures(torch.cat(samples[w]))[axis] for w in (low, high))
        ordered = (high_all > low_all).float().mean().item() * 100
        rows.append(f"| {axis} | {low} / {high} | {low_all.mean():.4f} | {high_all.mean():.4f} | {ordered:.0f} % |")
    return (f"{args.steer_per_prompt} samples per prompt and class, 10 classes, DDIM {args.steps} steps, CFG 2; "
            "'a photo of a <word> <class>'.\n\n" + "\n".join(rows))


def save_steer_grid(lows: list[torch.Tensor], highs: list[torch.Tensor], class_names, low: str, high: str) -> None:
    """Per class: five low-word samples, then the five high-word samples from the same noise."""
    from ddkit.data.distilled import DistilledSet
    from ddkit.report.figures import save_grid

    images = torch.cat([torch.cat([lo[:5], hi[:5]]) for lo, hi in zip(lows, highs)])
    labels = torch.arange(len(class_names)).repeat_interleave(10)
    grid = DistilledSet(images, labels, tuple(class_names), (0.5,), (0.5,))
    save_grid(grid, Path("benchmarks/results/dfkd-grids/steer-brightness.png"),
              f"text prior: 5 x 'a photo of a {low} <class>', then 5 x '{high}' (same noise)")


def write_grids(out: Path, variants: list[str], size: int = 100) -> None:
    """The 100-image sets as pictures: benchmarks/results/dfkd-grids/<variant>.png."""
    from ddkit.data.distilled import DistilledSet
    from ddkit.report.figures import save_grid

    for variant in variants:
        folder = out / "sets" / folder_name(variant, size)
        if (folder / "manifest.json").exists():
            save_grid(DistilledSet.load(folder), Path("benchmarks/results/dfkd-grids") / f"{folder_name(variant, size)}.png",
                      f"{variant}, {size} images")


def speed(args, device: torch.device) -> str:
    """Seconds per image for one work item of 10 images, with and without EDA, interleaved."""
    from ddkit.diffusion.train import resolve_prior

    splits = load_dataset(DatasetConfig())
    teachers = TeacherPool(splits, device=device)
    teacher = teachers("convnet-bn")
    prior = resolve_prior("fashion-mnist-text-unet", splits, teachers, device=device)
    configs = {name: resolve_config("prism-dfkd", {"energy_scale": scale, "sampler": {"steps": args.steps}})
               for name, scale in (("without EDA", 0.0), ("with EDA", 0.1))}
    prompts = build_prompts(PromptOptions(vocabulary="fashion-mnist"), splits.train.class_names, 0)
    item = WorkItem(0, tuple(range(10)))
    times = {name: [] for name in configs}
    for _ in range(args.repeats + 1):
        for name, cfg in configs.items():
            start = time.perf_counter()
            sample_item(prior, teacher.model, prompts, item, cfg, 0, splits.train.image_shape)
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["without EDA"][1:])
    lines = [f"DDIM {args.steps} steps, CFG 2, batch 10, median of {args.repeats} (after one warm-up round).", "",
             "| sampling | s / image | × without EDA |", "|---|---|---|"]
    for name, values in times.items():
        median = statistics.median(values[1:])
        lines.append(f"| {name} | {median / 10:.3f} | {median / plain:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="student seeds (default: the preset's)")
    parser.add_argument("--steps", type=int, default=None, help="DDIM steps (default 25; --quick 10)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--steer", action="store_true")
    parser.add_argument("--steer-per-prompt", type=int, default=10)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    args.steps = args.steps or (10 if args.quick else 25)
    args.preset = "dfkd-quick" if args.quick else "dfkd"
    args.sizes = args.sizes or ([100] if args.quick else [100, 1000, 10000])
    device = resolve_device(args.device)
    results = Path("benchmarks/results")
    extra = {"steer": ("dfkd-steer", "Content prompts steer the text prior", steer),
             "speed": ("dfkd-speed", "PRISM-DFKD sampling cost", speed),
             "tune": ("dfkd-tune", "EDA settings on the validation split", tune)}
    for flag, (name, title, run) in extra.items():
        if getattr(args, flag):
            table = run(args, device)
            print(table)
            if args.write:
                atomic_write_text(results / f"{name}.md", f"# {title}\n\n{stamp(device)}\n\n{table}\n")
            return
    out = args.out or Path("benchmarks/runs/dfkd" + ("-quick" if args.quick else ""))
    if not args.table_only:
        accuracy_runs(args, out, device)
    table = accuracy_table(out, args.preset, args.sizes, args.variants)
    text = f"{table}\n\n{teacher_line(out, args.preset)}"
    print(text)
    if args.write:
        write_grids(out, args.variants)
        atomic_write_text(results / f"dfkd{'-quick' if args.quick else ''}.md",
                          f"# Data-free KD on Fashion-MNIST (preset {args.preset})\n\n{stamp(device)}\n\n"
                          f"P/R/D/C and FID against 2,000 test images in {FIDELITY} features (k = 5).\n\n{text}\n")


if __name__ == "__main__":
    main()
