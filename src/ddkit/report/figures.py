"""Pictures: a grid of each distilled set (a row per class) and accuracy-vs-IPC plots."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402

from ddkit.data.distilled import DistilledSet  # noqa: E402
from ddkit.runs import atomic_write_bytes  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def save_grid(distilled: DistilledSet, path: Path, title: str, per_class: int = 10, scale: int = 2) -> None:
    """A row per class (name on the left), up to `per_class` images each, pixels clamped to [0, 1]."""
    columns = min(per_class, distilled.ipc)
    channels, height, width = distilled.images.shape[1:]
    blank = torch.ones(channels, height, width)
    cells = []
    for label in range(len(distilled.class_names)):
        members = distilled.images[distilled.labels == label][:columns].clamp(0, 1)
        cells += list(members) + [blank] * (columns - len(members))
    grid = make_grid(torch.stack(cells), nrow=columns, padding=2, pad_value=1.0)
    pixels = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(pixels).resize((grid.shape[2] * scale, grid.shape[1] * scale), Image.NEAREST)
    margin, header = 110, 20
    canvas = Image.new("RGB", (image.width + margin, image.height + header), "white")
    canvas.paste(image.convert("RGB"), (margin, header))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill="black")
    row_height = (height + 2) * scale
    for label, name in enumerate(distilled.class_names):
        draw.text((4, header + label * row_height + row_height // 2 - 5), name[:18], fill="black")
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def save_accuracy_plot(rows: list[dict], path: Path, preset: str) -> None:
    """One line per (method, student): mean test accuracy ± std against IPC."""
    lines: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for row in rows:
        if row["preset"] == preset:
            lines[f"{row['method']} · {row['student']}"].append((row["ipc"], row["mean"], row["std"]))
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, points in sorted(lines.items()):
        points.sort()
        ipcs, means, stds = zip(*points)
        ax.errorbar(ipcs, means, yerr=stds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("images per class (IPC)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"accuracy vs IPC — preset {preset}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    _save(fig, path)
