"""Diffusion-prior methods on Fashion-MNIST: random real vs plain prior vs MGD3 vs ManifoldGD vs
DAP vs DAP + manifold projection, with accuracy, fidelity, diversity and cost (issue 4).

    python benchmarks/diffusion.py --quick                 # quick presets, IPC 1 and 10, 10 sampling steps
    python benchmarks/diffusion.py                         # hard-dsa + soft-kd, IPC 1/10/50 (hours on 2 cores)
    python benchmarks/diffusion.py --tune                  # DAP defaults, chosen on the validation split
    python benchmarks/diffusion.py --tune --candidates plain "dap γ1 per-mode"   # some of them
    python benchmarks/diffusion.py --choose-defaults       # MGD3 / ManifoldGD: ddkit default vs released settings (val)
    python benchmarks/diffusion.py --speed                 # s/image per method and ratio to plain sampling
    python benchmarks/diffusion.py --dit --device cuda     # DiT-XL/2-shaped random prior + SD-shaped VAE, 50 steps

Accuracy runs accumulate in a run directory (default benchmarks/runs/diffusion[-quick]) and
resume; `--write` puts each table in benchmarks/results/diffusion*.md. The `mgd3` / `manifoldgd`
variants pin the methods' earlier defaults, so that every guided variant without `-reference` uses the
same prior, sampler (DDIM, 50 steps, CFG 2) and initial noise per sample as plain sampling and the
rows differ only in their guidance; the `-reference` variants are the released settings, now the
methods' defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from validation import validation_scores  # benchmarks/validation.py

from ddkit.curves import read_rows
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.images import ImageSet
from ddkit.devices import device_label, resolve_device
from ddkit.diffusion.prior import Prior
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.evaluate.diversity import measure_diversity
from ddkit.evaluate.fidelity import measure_fidelity
from ddkit.methods import resolve_config
from ddkit.methods.guided_diffusion import WorkItem, _Engine
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set
from ddkit.progress import make_progress
from ddkit.runs import atomic_write_json, atomic_write_text, environment, read_json

# MGD3 / ManifoldGD defaults before issue 14 chose the released settings on the validation split.
EARLIER_MODE_GUIDANCE = {"sampler": {"scheduler": "ddim", "cfg_scale": 2.0}, "mode_step": "noise", "mode_window": [0.0, 0.5]}
EARLIER_MANIFOLDGD = {**EARLIER_MODE_GUIDANCE, "project": True, "manifold_scale": 0.0}
EARLIER_DAP = {"kernel_references": "class"}  # before issue 14: every sample drew from the whole class
VARIANTS = {
    "random": ("random", {}),
    "diffusion": ("diffusion", {}),
    "mgd3": ("mgd3", EARLIER_MODE_GUIDANCE),
    "manifoldgd": ("manifoldgd", EARLIER_MANIFOLDGD),
    "dap": ("dap", EARLIER_DAP),
    "dap+manifold": ("dap", {**EARLIER_DAP, "project": True}),
    "dap-modes": ("dap", {"kernel_references": "mode"}),  # the default since issue 14
    # The released code's sampler (DiT gaussian_diffusion, 50 DDPM steps, CFG 4) and guidance:
    # MGD3's step λ·std_t(m − x̂₀) for t > 25 of 50 (24 steps), ManifoldGD's bisecting leaves and
    # the pull toward the plane of a 300-point noised cloud (K 12, d 3, radius 2r → r over the
    # first 5 steps) in place of our projection.
    "diffusion-ddpm": ("diffusion", {"sampler": {"scheduler": "ddpm", "cfg_scale": 4.0}}),
    "mgd3-reference": ("mgd3", {"sampler": {"scheduler": "ddpm", "cfg_scale": 4.0}, "mode_step": "ddpm-std",
                                "mode_window": [0.0, 0.48]}),
    "manifoldgd-reference": ("manifoldgd", {"sampler": {"scheduler": "ddpm", "cfg_scale": 4.0}, "mode_step": "ddpm-std",
                                            "mode_window": [0.0, 0.48], "project": False,
                                            "manifold_scale": 0.1}),
}
# DAP choices the paper leaves open, and ManifoldGD's λ under the projection (which shortens the
# mode step), measured on the validation split (IPC 10, hard-dsa, student seed 0).
ALL_STEPS = [0.0, 1.0]
TUNING = {
    "plain": ("diffusion", {}),
    "dap γ0.03": ("dap", {**EARLIER_DAP, "kernel_scale": 0.03, "kernel_window": ALL_STEPS}),
    "dap γ0.1": ("dap", {**EARLIER_DAP, "kernel_scale": 0.1, "kernel_window": ALL_STEPS}),
    "dap γ0.3": ("dap", {**EARLIER_DAP, "kernel_scale": 0.3, "kernel_window": ALL_STEPS}),
    "dap γ1": ("dap", {**EARLIER_DAP, "kernel_scale": 1.0, "kernel_window": ALL_STEPS}),
    "dap γ0.1 first half": ("dap", {**EARLIER_DAP, "kernel_scale": 0.1, "kernel_window": [0.0, 0.5]}),
    "dap γ0.1 rbf": ("dap", {**EARLIER_DAP, "kernel_scale": 0.1, "kernel": "rbf", "kernel_window": ALL_STEPS}),
    "dap γ1 unnormalised": ("dap", {**EARLIER_DAP, "kernel_scale": 1.0, "kernel_normalise": "none", "kernel_window": ALL_STEPS}),
    # issue 14: each IPC index draws its references from its own k-means cluster of the class
    "dap γ0.1 per-mode": ("dap", {"kernel_references": "mode"}),
    "dap γ0.3 per-mode": ("dap", {"kernel_references": "mode", "kernel_scale": 0.3}),
    "dap γ1 per-mode": ("dap", {"kernel_references": "mode", "kernel_scale": 1.0}),
    "dap γ1 per-mode all steps": ("dap", {"kernel_references": "mode", "kernel_scale": 1.0, "kernel_window": ALL_STEPS}),
    "manifoldgd λ0.1": ("manifoldgd", {**EARLIER_MANIFOLDGD, "mode_scale": 0.1}),
    "manifoldgd λ0.3": ("manifoldgd", {**EARLIER_MANIFOLDGD, "mode_scale": 0.3}),
}
# ddkit's defaults and the released code's settings, compared on the validation split (--choose-defaults)
DEFAULT_CHOICES = ("mgd3", "mgd3-reference", "manifoldgd", "manifoldgd-reference")
EXTRACTORS = ("convnet-in", "mlp")  # took no part in synthesis or in the prior's quality check
FIDELITY = "convnet-in"


def stamp(device: torch.device) -> str:
    env = environment()
    return (f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
            f"{env['threads']} CPU threads, device {device_label(device)}. Command: `python benchmarks/diffusion.py {' '.join(sys.argv[1:])}`.")


def with_steps(options: dict, steps: int | None, method: str) -> dict:
    return options if steps is None or method == "random" else {**options, "sampler": {**options.get("sampler", {}), "steps": steps}}


def accuracy_runs(args, out: Path, presets: list[str], ipcs: list[int], device: torch.device) -> None:
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        loaded = [load_eval_preset(p) for p in presets]
        extractors = {name: teachers(name) for name in EXTRACTORS}
        for ipc in ipcs:
            for variant in args.variants:
                method, options = VARIANTS[variant]
                folder = out / "sets" / f"{variant}-ipc{ipc}"
                started = time.perf_counter()
                distilled = make_set(method, with_steps(options, args.steps, method), ipc, 0, splits, dataset, teachers, folder, progress)
                if not (folder / "synthesis.json").exists():
                    atomic_write_json(folder / "synthesis.json", {"seconds": round(time.perf_counter() - started, 1),
                                                                  "images": len(distilled), "device": device_label(device)})
                measure_diversity(distilled, folder, splits.train, extractors)
                measure_fidelity(distilled, folder, splits.train, splits.test, {FIDELITY: extractors[FIDELITY]})
                for preset in loaded:
                    evaluate_set(distilled, preset, splits, folder / "eval", None, teachers, progress, device)


def _accuracy_cell(folder: Path, preset: str) -> str:
    summaries = list((folder / "eval" / preset).glob("*/summary.json"))
    if not summaries:
        return "not run"
    summary = read_json(summaries[0])
    return f"{summary['mean']:.2f} ± {summary['std']:.2f}"


def accuracy_table(out: Path, presets: list[str], ipcs: list[int], variants: list[str]) -> str:
    header = ["variant", "IPC", *presets, "P", "R", "D", "C", "FID", "KID", *(f"cos {e} (real)" for e in EXTRACTORS), "s / image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for ipc in ipcs:
        for variant in variants:
            folder = out / "sets" / f"{variant}-ipc{ipc}"
            cells = [_accuracy_cell(folder, p) for p in presets]
            path = folder / "fidelity" / f"{FIDELITY}.json"
            if path.exists():
                record = read_json(path)
                cells += [f"{record[k]:.3f}" if record[k] == record[k] else "nan" for k in ("precision", "recall", "density", "coverage")]
                cells += [f"{record['fid']:.2f}", f"{record['kid_mean']:.4f}"]
            else:
                cells += ["–"] * 6
            for extractor in EXTRACTORS:
                path = folder / "diversity" / f"{extractor}.json"
                record = read_json(path) if path.exists() else None
                cells.append("–" if record is None or record["mean"] is None else f"{record['mean']:.3f} ({record['real_mean']:.3f})")
            timing = folder / "synthesis.json"
            cells.append(f"{read_json(timing)['seconds'] / read_json(timing)['images']:.3f}" if timing.exists() else "–")
            lines.append(f"| {variant} | {ipc} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def real_reference_line(out: Path, ipcs: list[int]) -> str:
    """The fidelity of a real training subset of the same size, for reading the FID/PRDC columns."""
    parts = []
    for ipc in ipcs:
        path = out / "sets" / f"random-ipc{ipc}" / "fidelity" / f"{FIDELITY}.json"
        if path.exists():
            ref = read_json(path)["real_reference"]
            parts.append(f"IPC {ipc}: P {ref['precision']:.3f} R {ref['recall']:.3f} D {ref['density']:.3f} "
                         f"C {ref['coverage']:.3f} FID {ref['fid']:.2f}")
    return "; ".join(parts)


def projection_norms(out: Path, variant: str = "manifoldgd", ipc: int = 10) -> str:
    """How much of the mode step ManifoldGD's tangent projection keeps: the per-sample norm of the
    term before and after the projection, averaged over the guided steps of every work item."""
    column = "ModeGuidance+projection"
    rows = [row for path in sorted((out / "sets" / f"{variant}-ipc{ipc}" / "curves" / "guidance").glob("*.csv"))
            for row in read_rows(path) if f"{column}:raw_norm" in row]
    if not rows:
        return f"Projection norms: no {variant} IPC {ipc} curves in {out}."
    raw = statistics.mean(row[f"{column}:raw_norm"] for row in rows)
    kept = statistics.mean(row[f"{column}:projected_norm"] for row in rows)
    ratios = [row[f"{column}:projected_norm"] / row[f"{column}:raw_norm"] for row in rows]
    return (f"Projection norms ({variant}, IPC {ipc}, {len(rows)} guided steps over all items): mean ‖term‖ "
            f"before {raw:.4f}, after {kept:.4f}; after / before per step: mean {statistics.mean(ratios):.3f}, "
            f"min {min(ratios):.3f}, max {max(ratios):.3f}.")


def tune(args, device: torch.device) -> str:
    """DAP's and ManifoldGD's open choices on the validation split (`validation_scores`)."""
    candidates = {name: (method, with_steps(options, args.steps, method)) for name, (method, options) in TUNING.items()
                  if not args.candidates or name in args.candidates}
    out = Path("benchmarks/runs/diffusion-tune")
    return "\n\n".join([validation_scores(candidates, out, device), collapse_table(out, list(candidates), device)])


def collapse_table(out: Path, names: list[str], device: torch.device) -> str:
    """Precision / recall / coverage of the candidates' sets, as in the accuracy tables: DAP's
    collapse shows as low recall. A diagnostic beside the validation score, never the criterion."""
    from ddkit.data.distilled import DistilledSet

    splits = load_dataset(DatasetConfig())
    extractor = TeacherPool(splits, device=device)(FIDELITY)
    lines = [f"Fidelity of the same sets ({FIDELITY} features, k = 5, as in diffusion.md):", "",
             "| candidate | precision | recall | coverage |", "|---|---|---|---|"]
    for name in names:
        folder = out / name.replace(" ", "_")
        record = measure_fidelity(DistilledSet.load(folder), folder, splits.train, splits.test, {FIDELITY: extractor})[0]
        lines.append(f"| {name} | {record['precision']:.3f} | {record['recall']:.3f} | {record['coverage']:.3f} |")
    return "\n".join(lines)


def choose_defaults(args, device: torch.device) -> str:
    """ddkit's MGD3 / ManifoldGD defaults against the released code's settings, on the validation split.

    The sets are the accuracy runs' (`--out`, default benchmarks/runs/diffusion-reference), reused when made."""
    candidates = {f"{name}-ipc10": (VARIANTS[name][0], with_steps(VARIANTS[name][1], args.steps, VARIANTS[name][0]))
                  for name in DEFAULT_CHOICES}
    return validation_scores(candidates, (args.out or Path("benchmarks/runs/diffusion-reference")) / "sets", device)


def _median_seconds(fn, repeats: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def timing_table(prior: Prior, train: ImageSet, variants: dict, batch: int, steps: int, repeats: int,
                 device: torch.device, cfg_scale: float) -> str:
    """Seconds per image for one work item of `batch` images, methods interleaved round by round."""
    engines = {}
    for name, (method, options) in variants.items():
        if method == "random":
            continue
        cfg = resolve_config(method, {**options, "sampler": {**options.get("sampler", {}), "steps": steps, "cfg_scale": cfg_scale},
                                       "batch": batch})
        engine = _Engine(cfg, prior, train, seed=0, ipc=batch)
        engine.run(WorkItem(0, tuple(range(batch))), 0)  # warm-up; also computes modes and real references
        engines[name] = engine
    times = {name: [] for name in engines}
    peak = {}
    for _ in range(repeats):
        for name, engine in engines.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times[name] += _median_seconds(lambda engine=engine: engine.run(WorkItem(0, tuple(range(batch))), 0), 1, device)
            if device.type == "cuda":
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
    plain = statistics.median(times["diffusion"])
    lines = ["| method | s / image | × plain | peak GiB |", "|---|---|---|---|"]
    for name, values in times.items():
        median = statistics.median(values)
        memory = f"{peak[name] / 2**30:.2f}" if name in peak else "–"
        lines.append(f"| {name} | {median / batch:.3f} | {median / plain:.2f} | {memory} |")
    return "\n".join(lines)


def speed(args, device: torch.device) -> str:
    from ddkit.diffusion.train import resolve_prior

    splits = load_dataset(DatasetConfig())
    teachers = TeacherPool(splits, device=device)
    prior = resolve_prior("fashion-mnist-unet", splits, teachers, device=device)
    return timing_table(prior, splits.train, VARIANTS, batch=10, steps=args.steps or 50, repeats=args.repeats,
                        device=device, cfg_scale=2.0)


def dit(args, device: torch.device) -> str:
    """A DiT-XL/2-shaped denoiser on 32×32×4 latents and an SD-shaped AutoencoderKL, randomly
    initialised (no weights can be downloaded here): cost only, the samples mean nothing."""
    from diffusers import AutoencoderKL, DDIMScheduler, DiTTransformer2DModel

    torch.manual_seed(0)
    model = DiTTransformer2DModel(num_attention_heads=16, attention_head_dim=72, in_channels=4, out_channels=8,
                                  num_layers=args.dit_layers, sample_size=32, patch_size=2, num_embeds_ada_norm=1000)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        layers_per_block=2, sample_size=256)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear")
    prior = Prior(model, scheduler, vae, null_class=1000).to(device).requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    per_class = args.dit_real
    images = torch.rand(2 * per_class, 3, 256, 256, generator=generator)
    train = ImageSet(images, torch.arange(2).repeat_interleave(per_class), ("a", "b"), (0.5,) * 3, (0.25,) * 3)
    variants = {k: v for k, v in VARIANTS.items() if k in ("diffusion", "mgd3", "manifoldgd", "dap")}
    variants = {k: (m, {**o, "real_per_class": per_class}) for k, (m, o) in variants.items()}
    table = timing_table(prior, train, variants, batch=args.dit_batch, steps=args.steps or 50, repeats=args.repeats,
                         device=device, cfg_scale=4.0)
    parameters = sum(p.numel() for p in model.parameters())
    return f"DiT: {args.dit_layers} layers, {parameters / 1e6:.0f} M parameters; batch {args.dit_batch}, CFG 4.\n\n" + table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ipcs", type=int, nargs="+", default=None)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--presets", nargs="+", default=None,
                        help="evaluation presets (default: hard-dsa soft-kd; 'none': sets, fidelity and diversity only)")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the methods' 50; --quick: 10)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--candidates", nargs="+", choices=list(TUNING), help="--tune: only these candidates (default: all)")
    parser.add_argument("--choose-defaults", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--dit", action="store_true")
    parser.add_argument("--dit-layers", type=int, default=28)
    parser.add_argument("--dit-batch", type=int, default=10)
    parser.add_argument("--dit-real", type=int, default=64, help="random 256-px 'real' images per class for modes / DAP")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--results", default="diffusion.md", help="results file the accuracy table goes to under --write")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.quick and args.steps is None:
        args.steps = 10
    sections = {"tune": ("diffusion-tune.md", "# DAP defaults, chosen on the validation split", tune),
                "choose_defaults": ("diffusion-defaults.md", "# MGD3 / ManifoldGD defaults against the released settings, "
                                    "on the validation split", choose_defaults),
                "speed": ("diffusion-speed.md", "# Guided sampling cost (Fashion-MNIST prior)", speed),
                "dit": ("diffusion-dit.md", "# Guided sampling cost with a DiT-XL/2-shaped prior", dit)}
    for flag, (name, title, run) in sections.items():
        if getattr(args, flag):
            report = "\n".join([title, "", stamp(device), "", run(args, device), ""])
            print(report)
            if args.write:
                atomic_write_text(Path("benchmarks/results") / name, report)
            return
    presets = args.presets or (["hard-dsa-quick", "soft-kd-quick"] if args.quick else ["hard-dsa", "soft-kd"])
    presets = [p for p in presets if p != "none"]
    ipcs = args.ipcs or ([1, 10] if args.quick else [1, 10, 50])
    out = args.out or Path("benchmarks/runs") / ("diffusion-quick" if args.quick else "diffusion")
    if not args.table_only:
        accuracy_runs(args, out, presets, ipcs, device)
    report = "\n".join([
        "# Diffusion-prior methods on Fashion-MNIST", "", stamp(device), "",
        "Test top-1 (%), mean ± population std over student seeds 0, 1, 2 (sets made once, seed 0), final epoch, "
        f"ConvNet-3 student. P/R/D/C (k = 5), FID and KID against 2,000 test images in the feature space of the "
        f"`{FIDELITY}` teacher. Diversity: intra-class mean pairwise cosine of extractor features (lower = more "
        "diverse), real training images in brackets. s / image: synthesis wall time per image in this run, taken "
        "while other jobs shared the machine for some rows; diffusion-speed.md has the interleaved, like-for-like timings.", "",
        accuracy_table(out, presets, ipcs, args.variants), "",
        f"Real training subsets of the same size, same test sample: {real_reference_line(out, ipcs)}.", "",
        projection_norms(out), ""])
    print(report)
    if args.write:
        atomic_write_text(Path("benchmarks/results") / args.results, report)
        write_grids(out, args.variants)


def write_grids(out: Path, variants: list[str], ipc: int = 10) -> None:
    """The IPC-10 sets side by side as pictures: benchmarks/results/diffusion-grids/<variant>.png."""
    from ddkit.data.distilled import DistilledSet
    from ddkit.report.figures import save_grid

    for variant in variants:
        folder = out / "sets" / f"{variant}-ipc{ipc}"
        if (folder / "manifest.json").exists():
            save_grid(DistilledSet.load(folder), Path("benchmarks/results/diffusion-grids") / f"{variant}.png", f"{variant}, IPC {ipc}")


if __name__ == "__main__":
    main()
