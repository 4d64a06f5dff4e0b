"""Scale-out: an image-folder tree larger than memory, and synthesis on 1 and 2 processes.

    python benchmarks/scale.py --quick     # 10 classes × 60 JPEGs; IPC-2 sets (a minute or two)
    python benchmarks/scale.py --write     # 200 classes × 300 JPEGs at 256 px (60,000); IPC-10 sets

Memory: the tree is indexed (cold, then reused) and its training split iterated once at 224 px
with 0, 1 and 2 DataLoader workers, each phase in a fresh process so its peak RSS is its own
(`ru_maxrss` of the process, and of its largest worker). In RAM as float32 at 224 px the
60,000 images would take 60,000 × 3 × 224² × 4 B ≈ 36 GB.

Speed-up: one inversion set (SRe2L) and one guided-diffusion set (plain class-conditional
sampling, the tiny test prior) made by `ddkit synthesize` under torchrun with 1 and 2 CPU
processes, side by side in one run: wall-time ratio and the sha256 of each set's tensor file
(equal: a set does not depend on the number of processes).

The tree, teacher cache and sets live in benchmarks/runs/scale[-quick]; `--write` puts the table
in benchmarks/results/scale.md with the date, versions and command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from ddkit.runs import atomic_write_text, environment

TREE_DONE = "tree-complete.json"


def make_image(path: Path, label: int, index: int, size: int) -> None:
    """A smooth random picture (JPEG-compressible like a photo), tinted by its class, landscape 4:3."""
    rng = np.random.default_rng(label * 1_000_003 + index)
    coarse = rng.uniform(0, 255, (6, 8, 3)) * 0.7 + np.array([label * 37 % 256, label * 91 % 256, label * 53 % 256]) * 0.3
    picture = Image.fromarray(coarse.astype(np.uint8)).resize((size * 4 // 3, size), Image.BICUBIC)
    picture.save(path, quality=90)


def _make_class(args: tuple[Path, int, int, int, int]) -> None:
    root, label, train, val, size = args
    for split, count in (("train", train), ("val", val)):
        folder = root / split / f"class{label:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            make_image(folder / f"img{i:05d}.jpg", label, i + (0 if split == "train" else train), size)


def make_tree(root: Path, classes: int, train: int, val: int, size: int) -> dict:
    """ROOT/{train,val}/classNNNN/imgNNNNN.jpg, made once (reused while its marker matches)."""
    wanted = {"classes": classes, "train_per_class": train, "val_per_class": val, "size": size}
    marker = root / TREE_DONE
    if marker.exists() and json.loads(marker.read_text()).get("spec") == wanted:
        return json.loads(marker.read_text())
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make_class, [(root, c, train, val, size) for c in range(classes)]))
    files = list(root.rglob("*.jpg"))
    info = {"spec": wanted, "files": len(files), "bytes": sum(f.stat().st_size for f in files),
            "seconds": round(time.perf_counter() - started, 1)}
    marker.write_text(json.dumps(info))
    return info


def peak_rss_mb() -> tuple[float, float]:
    """(this process's peak RSS, the largest finished child's peak RSS) in MB (Linux reports KiB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def phase(args: argparse.Namespace) -> dict:
    """One measurement, run in its own process (see `measure`)."""
    from ddkit.data import DatasetConfig, load_dataset

    config = DatasetConfig(name="image-folder", root=str(args.tree), image_size=args.image_size, val_size=args.classes)
    started = time.perf_counter()
    splits = load_dataset(config)
    result = {"load_seconds": round(time.perf_counter() - started, 2), "train_images": len(splits.train),
              "fingerprint": splits.fingerprint}
    if args.phase == "iterate":
        started, seen, checksum = time.perf_counter(), 0, 0.0
        for _index, images, _labels in splits.train.batches(256, workers=args.workers):
            seen += len(images)
            checksum += float(images[:, :, ::37, ::37].sum())  # touch the pixels; equal for every worker count
        seconds = time.perf_counter() - started
        result |= {"images": seen, "seconds": round(seconds, 1), "images_per_second": round(seen / seconds, 1),
                   "checksum": round(checksum, 2)}
    result["peak_rss_mb"], result["peak_worker_rss_mb"] = (round(v) for v in peak_rss_mb())
    return result


def measure(args: argparse.Namespace, what: str, workers: int = 0) -> dict:
    command = [sys.executable, __file__, "--phase", what, "--workers", str(workers), "--tree", str(args.tree),
               "--image-size", str(args.image_size), "--classes", str(args.classes)]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ | {"DDKIT_CACHE": str(args.cache)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ddkit_command(processes: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port", str(free_port()),
            "-m", "ddkit", "-q", *args]


def tensor_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.safetensors")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def synthesis_rows(args: argparse.Namespace) -> list[dict]:
    """Each set made with 1 then 2 processes, alternating, so both see the same machine load."""
    ipc = 2 if args.quick else 10
    data = ["--dataset.train_per_class=200", "--dataset.val_size=100"]  # a teacher in seconds; the work items are what is timed
    jobs = {
        "sre2l (BN inversion)": ["synthesize", "sre2l", "--ipc", str(ipc), "--iterations=" + ("20" if args.quick else "200"), *data],
        "diffusion (test prior)": ["synthesize", "diffusion", "--ipc", str(ipc), "--prior=test-unet",
                                   "--sampler.steps=" + ("5" if args.quick else "25"), *data],
    }
    env = os.environ | {"DDKIT_CACHE": str(args.cache), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "ddkit", "-q", "squeeze", "convnet-bn", "--device", "cpu", *data], check=True, env=env)
    rows = []
    for name, job in jobs.items():
        row = {"job": name}
        for processes in (1, 2):
            out = args.runs / "sets" / f"{job[1]}-{processes}p"
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(ddkit_command(processes, *job, "--out", str(out), "--device", "cpu"), check=True, env=env)
            row[f"{processes}p_seconds"] = round(time.perf_counter() - started, 1)
            row[f"{processes}p_sha256"] = tensor_digest(out)
        rows.append(row)
    return rows


def report(args: argparse.Namespace, tree: dict, index: list[dict], iterate: dict[int, dict], synthesis: list[dict]) -> str:
    env = environment()
    float_gb = tree["spec"]["classes"] * tree["spec"]["train_per_class"] * 3 * args.image_size**2 * 4 / 1e9
    lines = [
        "# Scale-out: a tree larger than memory, synthesis on 1 and 2 processes",
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. ddkit {env['ddkit']} (git {env['git']}), torch {env['torch']}, "
        f"{os.cpu_count()} CPU cores. Command: `python benchmarks/scale.py {' '.join(sys.argv[1:])}`.",
        "",
        f"Tree: {tree['spec']['classes']} classes × {tree['spec']['train_per_class']} training JPEGs "
        f"(+ {tree['spec']['val_per_class']} val) at {tree['spec']['size']} px short side, {tree['files']:,} files, "
        f"{tree['bytes'] / 1e9:.2f} GB on disk. In RAM as float32 at {args.image_size} px the training split would take "
        f"{float_gb:.1f} GB. Each row is a fresh process; peak RSS is `ru_maxrss` of the process and of its largest worker.",
        "",
        "| phase | seconds | images / s | peak RSS (MB) | largest worker (MB) |",
        "|---|---|---|---|---|",
    ]
    for name, row in zip(("index (cold: scan + write)", "index (reused)"), index):
        lines.append(f"| {name} | {row['load_seconds']} | – | {row['peak_rss_mb']} | – |")
    for workers, row in iterate.items():
        lines.append(f"| iterate the training split at {args.image_size} px, {workers} worker{'' if workers == 1 else 's'} | {row['seconds']} | "
                     f"{row['images_per_second']} | {row['peak_rss_mb']} | {row['peak_worker_rss_mb'] if workers else '–'} |")
    checksums = {row["checksum"] for row in iterate.values()}
    lines += ["", f"Pixel checksum equal for every worker count: {'yes' if len(checksums) == 1 else 'NO'}.", "",
              "| set (Fashion-MNIST, 200 images per class) | 1 process (s) | 2 processes (s) | speed-up "
              "| sha256 (1 process) | sha256 (2 processes) | equal |",
              "|---|---|---|---|---|---|---|"]
    for row in synthesis:
        lines.append(f"| {row['job']} | {row['1p_seconds']} | {row['2p_seconds']} | {row['1p_seconds'] / row['2p_seconds']:.2f}× | "
                     f"`{row['1p_sha256']}` | `{row['2p_sha256']}` | {'yes' if row['1p_sha256'] == row['2p_sha256'] else 'NO'} |")
    lines += ["", "Wall times include each process's start (imports, data, teacher load), so the speed-up of the "
              "synthesis loop itself is higher than the ratio shown.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true", help="write benchmarks/results/scale.md")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--phase", choices=["index", "iterate"], help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--classes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    args.runs = Path("benchmarks/runs") / ("scale-quick" if args.quick else "scale")
    args.tree, args.cache = args.runs / "tree", args.runs / "cache"
    classes, train, val = (10, 60, 6) if args.quick else (200, 300, 10)
    args.classes = classes
    tree = make_tree(args.tree, classes, train, val, 256)
    shutil.rmtree(args.cache / "indexes", ignore_errors=True)
    index = [measure(args, "index"), measure(args, "index")]
    iterate = {workers: measure(args, "iterate", workers) for workers in (0, 1, 2)}
    text = report(args, tree, index, iterate, synthesis_rows(args))
    print(text)
    if args.write:
        atomic_write_text(Path("benchmarks/results/scale.md"), text)


if __name__ == "__main__":
    main()
