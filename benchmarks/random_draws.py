"""How much of a random-subset number is the draw? hard-dsa on several random draws, plus two ablations.

    python benchmarks/random_draws.py --quick   # IPC 10, draws 0-2, student seed 0 (about 8 min on 2 cores)
    python benchmarks/random_draws.py           # IPC 1 and 10, draws 0-4, student seeds 0-2

Ablations on draw 0, student seed 0: no augmentation (what the DC code does for Fashion-MNIST
outside DSA), and the DC code's ConvNet stem (first conv padded by 3 for 28 px inputs).
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace

from ddkit.data import DatasetConfig, load_dataset
from ddkit.evaluate import load_eval_preset
from ddkit.evaluate.students import train_student
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec
from ddkit.training import accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    ipcs, draws, seeds = ([10], range(3), [0]) if args.quick else ([1, 10], range(5), [0, 1, 2])
    splits = load_dataset(DatasetConfig())
    preset = load_eval_preset("hard-dsa")

    def score(data, student_preset, student, seed) -> float:
        return round(accuracy(train_student(data, student_preset, student, seed), splits.test), 2)

    print("| IPC | draw | student seeds | hard-dsa top-1 |\n|---|---|---|---|")
    for ipc in ipcs:
        per_draw = []
        for draw in draws:
            data = synthesize("random", {}, SynthesisContext(splits, ipc, draw, None)).as_image_set()
            accs = [score(data, preset, preset.student, seed) for seed in seeds]
            per_draw.append(statistics.fmean(accs))
            print(f"| {ipc} | {draw} | {','.join(map(str, seeds))} | {statistics.fmean(accs):.2f} |", flush=True)
        print(f"| {ipc} | mean over draws | | {statistics.fmean(per_draw):.2f} ± {statistics.pstdev(per_draw):.2f} |", flush=True)
    data = synthesize("random", {}, SynthesisContext(splits, ipcs[-1], 0, None)).as_image_set()
    no_aug = replace(preset, train=replace(preset.train, augmentation="none"))
    print(f"| {ipcs[-1]} | 0, no augmentation | 0 | {score(data, no_aug, preset.student, 0):.2f} |")
    dc_stem = ModelSpec("convnet", {**preset.student.options, "dc_stem": True})
    print(f"| {ipcs[-1]} | 0, DC stem | 0 | {score(data, preset, dc_stem, 0):.2f} |")


if __name__ == "__main__":
    main()
