"""Matching methods on Fashion-MNIST (DM, and gradient matching `dc`): accuracy of the set, and speed
against the reference code.

    python benchmarks/matching.py --quick                      # DM, IPC 1, 20 iterations, quick presets (minutes)
    python benchmarks/matching.py --ipcs 10 --iterations 1000  # hard-dsa + soft-kd, 3 student seeds
    python benchmarks/matching.py --method dc --ipcs 1 --iterations 200   # gradient matching (DSA)
    python benchmarks/matching.py --ipcs 10 --iterations 500 --init herding   # DM from the herding coreset
    python benchmarks/matching.py --speed --reference DIR      # s / iteration: ddkit's DM vs main_DM.py's loop,
                                                               # DIR a checkout of VICO-UoE/DatasetCondensation
    python benchmarks/matching.py --speed --method dc --reference DIR   # ddkit's dc vs main.py's DSA loop

Sets accumulate in a run directory (default benchmarks/runs/matching[-quick]) and resume; `--write`
puts the table in benchmarks/results/matching.md and each set's image grid in
benchmarks/results/matching-grids/ (`--speed --write`: matching-speed.md, or
gradient-matching-speed.md for `--method dc`).

The speed mode times both implementations side by side in one process, alternating, on the same
real images, IPC 10, 256 real images per class: the reference's per-class loop (its ConvNet,
DiffAugment and get_network, imported from DIR) against ddkit's work item, each with the embedding
net the reference uses at 28 px (its first conv pads by 3, `dc_stem`) and ddkit's default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset

from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.distilled import DistilledSet
from ddkit.devices import device_label, resolve_device
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models.teachers import TeacherPool
from ddkit.pipeline import make_set
from ddkit.progress import make_progress
from ddkit.report.figures import save_grid
from ddkit.runs import atomic_write_text, environment, read_json

REFERENCE_NET = "convnet(width=128,depth=3,norm=instance,dc_stem=true)"
DSA_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def accuracy_runs(args, out: Path, presets: list[str], device: torch.device) -> None:
    dataset = DatasetConfig()
    splits = load_dataset(dataset)
    options = {"iterations": args.iterations, "init": args.init}
    if args.method == "dc":
        options["checkpoint_every"] = 5  # an iteration takes minutes on a CPU
    with make_progress() as progress:
        teachers = TeacherPool(splits, progress=progress, device=device)
        loaded = [load_eval_preset(p) for p in presets]
        for ipc in args.ipcs:
            start = "" if args.init == "real" else f"-{args.init}"
            folder = out / "sets" / f"{args.method}-{args.iterations}{start}-ipc{ipc}"
            started = time.perf_counter()
            distilled = make_set(args.method, options, ipc, 0, splits, dataset, teachers, folder, progress)
            if not (folder / "synthesis-seconds.txt").exists():
                atomic_write_text(folder / "synthesis-seconds.txt", f"{time.perf_counter() - started:.1f} {device_label(device)}\n")
            for preset in loaded:
                evaluate_set(distilled, preset, splits, folder / "eval", None, teachers, progress, device)


def accuracy_table(out: Path, presets: list[str]) -> str:
    lines = ["| set | init | IPC | iterations | " + " | ".join(presets) + " | synthesis s |", "|" + "---|" * (len(presets) + 5)]
    finished = [p for p in (out / "sets").glob("*-*-ipc*") if p.name.split("ipc")[1].isdigit()]  # not .lock / .partial
    for folder in sorted(finished, key=lambda p: (int(p.name.split("ipc")[1]), p.name)):
        method, iterations, *start = folder.name.split("-")[:-1]
        ipc = folder.name.split("ipc")[1]
        cells = []
        for preset in presets:
            summaries = list((folder / "eval" / preset).glob("*/summary.json"))
            summary = read_json(summaries[0]) if summaries else None
            cells.append(f"{summary['mean']:.2f} ± {summary['std']:.2f}" if summary else "not run")
        timing = folder / "synthesis-seconds.txt"
        cells.append(timing.read_text().strip() if timing.exists() else "–")
        lines.append(f"| {method} | {'-'.join(start) or 'real'} | {ipc} | {iterations} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reference_iteration(reference: Path):
    """One iteration of main_DM.py's ConvNet branch, with the reference's own modules."""
    sys.path.insert(0, str(reference))
    from utils import DiffAugment, ParamDiffAug, get_network  # noqa: E402  (the reference checkout)

    param, strategy = ParamDiffAug(), DSA_STRATEGY

    def embed(net, x):
        # net.embed's .view() fails on current torch when DiffAugment's crop leaves a 1-channel batch
        # channels-last (the conv then answers channels-last); reshape is the same computation
        return net.features(x).reshape(len(x), -1)

    def step(image_syn, optimizer, real_by_class, ipc, batch_real):
        net = get_network("ConvNet", 1, len(real_by_class), (28, 28))
        net.train()
        for p in net.parameters():
            p.requires_grad = False
        loss = torch.tensor(0.0)
        for c, real in enumerate(real_by_class):
            img_real = real[torch.randperm(len(real))[:batch_real]]
            img_syn = image_syn[c * ipc:(c + 1) * ipc]
            seed = int(time.time() * 1000) % 100000
            img_real = DiffAugment(img_real, strategy, seed=seed, param=param)
            img_syn = DiffAugment(img_syn, strategy, seed=seed, param=param)
            loss += torch.sum((embed(net, img_real).detach().mean(0) - embed(net, img_syn).mean(0)) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def reference_gm_iteration(reference: Path, outer_loop: int, inner_loop: int):
    """One iteration of main.py's DSA loop (ConvNet, 'ours' distance), with the reference's own modules."""
    sys.path.insert(0, str(reference))
    from utils import DiffAugment, ParamDiffAug, epoch, get_network, match_loss  # noqa: E402  (the reference checkout)

    options = SimpleNamespace(device="cpu", dis_metric="ours", dsa=True, dsa_strategy=DSA_STRATEGY, dsa_param=ParamDiffAug())
    criterion = torch.nn.CrossEntropyLoss()

    def step(image_syn, optimizer_img, real_by_class, ipc, batch_real):
        net = get_network("ConvNet", 1, len(real_by_class), (28, 28))
        # ConvNet.forward's .view() fails on DiffAugment's channels-last crops (see reference_iteration); reshape instead
        net.forward = lambda x: net.classifier(net.features(x).reshape(len(x), -1))
        net.train()
        net_parameters = list(net.parameters())
        optimizer_net = torch.optim.SGD(net.parameters(), lr=0.01)
        label_syn = torch.arange(len(real_by_class)).repeat_interleave(ipc)
        for ol in range(outer_loop):
            loss = torch.tensor(0.0)
            for c, real in enumerate(real_by_class):
                img_real = real[torch.randperm(len(real))[:batch_real]]
                img_syn = image_syn[c * ipc:(c + 1) * ipc]
                seed = int(time.time() * 1000) % 100000
                img_real = DiffAugment(img_real, DSA_STRATEGY, seed=seed, param=options.dsa_param)
                img_syn = DiffAugment(img_syn, DSA_STRATEGY, seed=seed, param=options.dsa_param)
                gw_real = torch.autograd.grad(criterion(net(img_real), torch.full((len(img_real),), c)), net_parameters)
                gw_real = [g.detach().clone() for g in gw_real]
                gw_syn = torch.autograd.grad(criterion(net(img_syn), torch.full((ipc,), c)), net_parameters, create_graph=True)
                loss += match_loss(gw_syn, gw_real, options)
            optimizer_img.zero_grad()
            loss.backward()
            optimizer_img.step()
            if ol == outer_loop - 1:
                break
            loader = DataLoader(TensorDataset(image_syn.detach().clone(), label_syn), batch_size=256, shuffle=True)
            for _ in range(inner_loop):
                epoch("train", loader, net, optimizer_net, criterion, options, aug=True)

    return step


def speed(args) -> str:
    splits = load_dataset(DatasetConfig())
    train, ipc, batch_real = splits.train, 10, 256
    mean, std = torch.tensor(train.mean).view(1, -1, 1, 1), torch.tensor(train.std).view(1, -1, 1, 1)
    real_by_class = [(train.load(train.indices_of(c)) - mean) / std for c in range(train.num_classes)]
    image_syn = torch.cat([r[:ipc] for r in real_by_class]).clone().requires_grad_(True)
    optimizer = torch.optim.SGD([image_syn], lr=1.0, momentum=0.5)
    if args.method == "dm":
        step, options, reference_name = reference_iteration(args.reference), {}, "main_DM.py (reference)"
    else:
        step, reference_name = reference_gm_iteration(args.reference, *args.loops), "main.py DSA (reference)"
        options = {"outer_loop": args.loops[0], "inner_loop": args.loops[1]}
    ctx = SynthesisContext(splits, ipc, 0, teacher=None)

    def ddkit_seconds(network: str) -> float:
        # the work item's set-up (real images, init) is timed once with one iteration and subtracted
        def run(iterations: int) -> float:
            started = time.perf_counter()
            synthesize(args.method, {"iterations": iterations, "network": network, **options}, ctx)
            return time.perf_counter() - started

        return (run(1 + args.iterations) - run(1)) / args.iterations

    def reference_seconds() -> float:
        started = time.perf_counter()
        for _ in range(args.iterations):
            step(image_syn, optimizer, real_by_class, ipc, batch_real)
        return (time.perf_counter() - started) / args.iterations

    timings: dict[str, list[float]] = {reference_name: [], "ddkit, reference net (dc_stem)": [], "ddkit, default net": []}
    for _ in range(args.repeats):
        timings[reference_name].append(reference_seconds())
        timings["ddkit, reference net (dc_stem)"].append(ddkit_seconds(REFERENCE_NET))
        timings["ddkit, default net"].append(ddkit_seconds("convnet(width=128,depth=3,norm=instance)"))
    base = statistics.median(timings[reference_name])
    lines = ["| implementation | s / iteration (median of repeats) | reference / this |", "|---|---|---|"]
    for name, values in timings.items():
        lines.append(f"| {name} | {statistics.median(values):.2f} | {base / statistics.median(values):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--method", choices=("dm", "dc"), default="dm")
    parser.add_argument("--loops", type=int, nargs=2, default=(2, 2), help="with --speed --method dc: outer_loop inner_loop")
    parser.add_argument("--ipcs", type=int, nargs="+", default=None)
    parser.add_argument("--iterations", type=int, default=None, help="DM iterations (default 1000; quick 20; speed 3)")
    parser.add_argument("--init", choices=("real", "herding", "kernel-herding"), default="real", help="random real images or a coreset")
    parser.add_argument("--presets", nargs="+", default=None, help="evaluation presets (default: hard-dsa soft-kd)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--reference", type=Path, help="with --speed: a checkout of VICO-UoE/DatasetCondensation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    env = environment()
    stamp = (f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
             f"{env['threads']} CPU threads. Command: `python benchmarks/matching.py {' '.join(sys.argv[1:])}`.")
    if args.speed:
        if args.reference is None:
            parser.error("--speed needs --reference DIR (a checkout of VICO-UoE/DatasetCondensation)")
        args.iterations = args.iterations or 3
        title = "Distribution matching" if args.method == "dm" else f"Gradient matching (DSA, {args.loops[0]} × {args.loops[1]} loops)"
        report = "\n".join([f"# {title} speed, Fashion-MNIST IPC 10, CPU", "", stamp, "", speed(args), ""])
        print(report)
        if args.write:
            name = "matching-speed.md" if args.method == "dm" else "gradient-matching-speed.md"
            atomic_write_text(Path("benchmarks/results") / name, report)
        return
    presets = args.presets or (["hard-dsa-quick", "soft-kd-quick"] if args.quick else ["hard-dsa", "soft-kd"])
    args.ipcs = args.ipcs or ([1] if args.quick else [1, 10])
    args.iterations = args.iterations or (20 if args.quick else 1000)
    out = args.out or Path("benchmarks/runs") / ("matching-quick" if args.quick else "matching")
    device = resolve_device(args.device)
    if not args.table_only:
        accuracy_runs(args, out, presets, device)
    report = "\n".join(["# Matching methods (DM, gradient matching) on Fashion-MNIST", "", stamp, "",
                        "Test top-1 (%), mean ± population std over student seeds 0, 1, 2 (set made once, seed 0), final "
                        "epoch, ConvNet-3 student; method defaults (`ddkit list methods`) but the iterations shown.", "",
                        accuracy_table(out, presets), ""])
    print(report)
    if args.write:
        atomic_write_text(Path("benchmarks/results/matching.md"), report)
        for folder in sorted((out / "sets").glob("*-*-ipc*")):  # the sets as pictures, next to the table
            if (folder / "manifest.json").exists():
                save_grid(DistilledSet.load(folder), Path("benchmarks/results/matching-grids") / f"{folder.name}.png", folder.name)


if __name__ == "__main__":
    main()
