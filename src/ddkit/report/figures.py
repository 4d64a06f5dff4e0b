"""Pictures: a grid of each distilled set (a row per class) and accuracy-vs-IPC plots."""

from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ddkit.data.distilled import DistilledSet  # noqa: E402
from ddkit.runs import atomic_write_bytes  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def save_grid(distilled: DistilledSet, path: Path, title: str, per_class: int = 10) -> None:
    classes = len(distilled.class_names)
    columns = min(per_class, distilled.ipc)
    fig, axes = plt.subplots(classes, columns, figsize=(0.9 * columns + 1.6, 0.9 * classes + 0.4), squeeze=False)
    for label in range(classes):
        members = torch.nonzero(distilled.labels == label).flatten()[:columns]
        for column in range(columns):
            ax = axes[label, column]
            ax.set_xticks([]), ax.set_yticks([])
            if column < len(members):
                image = distilled.images[members[column]].clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
                ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            if column == 0:
                ax.set_ylabel(distilled.class_names[label], rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


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
