"""Leaderboard of a run directory (or of one distilled set): every number with its preset."""

from __future__ import annotations

from pathlib import Path

from ddkit import __version__
from ddkit.data.distilled import DISTILLED_SET, DistilledSet
from ddkit.errors import DDKitError
from ddkit.evaluate import read_summaries
from ddkit.evaluate.diversity import REAL_SAMPLE
from ddkit.runs import RUN_DIR, OutputKind, atomic_write_json, atomic_write_text, check_output, read_json

REPORT = OutputKind("report", lambda folder: (folder / "leaderboard.json").is_file())


def set_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if (root / "tensors.safetensors").exists():
        return [root]
    return sorted(p.parent for p in (root / "sets").glob("*/tensors.safetensors"))


def collect_rows(root: Path) -> list[dict]:
    rows = []
    for folder in set_dirs(root):
        meta = read_json(folder / "manifest.json")["meta"]
        for summary in read_summaries(folder / "eval"):
            rows.append({
                "set": folder.name, "method": meta.get("method", "?"), "ipc": meta.get("ipc"),
                "preset": summary.preset, "quick": summary.quick, "student": summary.student,
                "teacher": summary.teacher, "seeds": summary.seeds, "accuracies": summary.accuracies,
                "mean": summary.mean, "std": summary.std, "shift_means": summary.shift_means,
            })
    return sorted(rows, key=lambda r: (r["preset"], r["student"], r["ipc"] or 0, -r["mean"]))


def collect_records(root: Path, kind: str) -> list[dict]:
    """The per-extractor records under SET/<kind>/*.json of every set, with the set's method and IPC."""
    rows = []
    for folder in set_dirs(root):
        meta = read_json(folder / "manifest.json")["meta"]
        for path in sorted((folder / kind).glob("*.json")):
            record = read_json(path)
            rows.append({"set": folder.name, "method": meta.get("method", "?"), "ipc": meta.get("ipc"), **record})
    return sorted(rows, key=lambda r: (r["name"], r["ipc"] or 0, r["method"]))


def collect_diversity(root: Path) -> list[dict]:
    return collect_records(root, "diversity")


def collect_fidelity(root: Path) -> list[dict]:
    return collect_records(root, "fidelity")


def diversity_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "",
        "## Intra-class diversity",
        "",
        "Mean pairwise cosine similarity of extractor features within a class, averaged over classes "
        f"(lower = more diverse), next to the same number for {REAL_SAMPLE} real training images per class.",
        "",
        "| extractor | method | IPC | set | real |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        value = f"{r['mean']:.3f}" if r["mean"] is not None else "– (IPC 1)"
        lines.append(f"| {r['name']} | {r['method']} | {r['ipc']} | {value} | {r['real_mean']:.3f} |")
    return "\n".join(lines) + "\n"


def fidelity_markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = [
        "",
        "## Fidelity to the test distribution",
        "",
        "Precision, recall, density and coverage (Naeem et al. 2020, k-NN balls), FID and KID of the set "
        "against a fixed class-balanced sample of test images, in the extractor's penultimate features. "
        "FID and KID depend on sample size, so the last two columns give FID and coverage of a random "
        "real training subset with the set's class counts against the same test sample.",
        "",
        "| set | extractor | P | R | D | C | FID | KID | real FID | real C |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        real = r["real_reference"]
        lines.append(
            f"| {r['set']} | {r['name']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['density']:.3f} | "
            f"{r['coverage']:.3f} | {r['fid']:.4g} | {r['kid_mean']:.3g} ± {r['kid_std']:.2g} | "
            f"{real['fid']:.4g} | {real['coverage']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def leaderboard_markdown(rows: list[dict], diversity: list[dict] = (), fidelity: list[dict] = ()) -> str:
    lines = [
        f"# Leaderboard (ddkit {__version__})",
        "",
        "Test top-1 (%), mean ± std (population) over the listed seeds, final epoch. "
        "Presets marked QUICK are for pipeline checks only and are not comparable to published numbers.",
        "",
        "| preset | student | method | IPC | top-1 | seeds | teacher |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        preset = r["preset"] + (" (QUICK)" if r["quick"] else "")
        lines.append(
            f"| {preset} | {r['student']} | {r['method']} | {r['ipc']} | {r['mean']:.2f} ± {r['std']:.2f} | "
            f"{','.join(map(str, r['seeds']))} | {r['teacher'] or '–'} |"
        )
    return "\n".join(lines) + "\n" + shifts_markdown(rows) + diversity_markdown(list(diversity)) + fidelity_markdown(list(fidelity))


def shifts_markdown(rows: list[dict]) -> str:
    """Mean top-1 on the shifted test copies, for presets that score them (e.g. dfkd)."""
    shifted = [r for r in rows if r.get("shift_means")]
    if not shifted:
        return ""
    names = list(shifted[0]["shift_means"])
    lines = ["", "## Shifted test sets (ddkit.data.shifts)", "", "| preset | student | method | IPC | clean | " + " | ".join(names) + " |",
             "|" + "---|" * (5 + len(names))]
    for r in shifted:
        lines.append(f"| {r['preset']} | {r['student']} | {r['method']} | {r['ipc']} | {r['mean']:.2f} | "
                     + " | ".join(f"{r['shift_means'].get(n, float('nan')):.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def write_report(root: Path) -> Path:
    """Write RUN/report/{leaderboard.md, leaderboard.json, grid-<set>.png, accuracy-<preset>.png}."""
    from ddkit.report.figures import save_accuracy_plot, save_grid

    if not (RUN_DIR.recognise(Path(root)) or DISTILLED_SET.recognise(Path(root))):
        raise DDKitError(f"{root} is neither a ddkit run nor a distilled set; give a folder that 'ddkit run' or "
                         "'ddkit synthesize' wrote")
    out = Path(root) / "report"
    check_output(out, REPORT)
    rows, diversity, fidelity = collect_rows(root), collect_diversity(root), collect_fidelity(root)
    atomic_write_text(out / "leaderboard.md", leaderboard_markdown(rows, diversity, fidelity))
    atomic_write_json(out / "leaderboard.json",
                      {"ddkit": __version__, "rows": rows, "diversity": diversity, "fidelity": fidelity})
    for folder in set_dirs(root):
        distilled = DistilledSet.load(folder)
        save_grid(distilled, out / f"grid-{folder.name}.png", f"{folder.name} ({len(distilled)} images)")
    for preset in sorted({r["preset"] for r in rows}):
        if len({r["ipc"] for r in rows if r["preset"] == preset}) > 1:
            save_accuracy_plot(rows, out / f"accuracy-{preset}.png", preset)
    return out
