"""One process of a multi-process test (tests/test_ddp.py starts N of them with RANK, WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set, as torchrun would): runs one collective stage on the tiny split
and writes what this rank saw to OUT/rank-<rank>.json (and .pt for weights).

    python tests/ddp_worker.py OUT fit
    python tests/ddp_worker.py OUT evaluate MODES
    python tests/ddp_worker.py OUT squeeze CACHE [STOP_AT_STEP]
    python tests/ddp_worker.py OUT prior CACHE
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from ddkit import distributed, training
from ddkit.data import DatasetConfig, load_dataset
from ddkit.data.images import DataSplits
from ddkit.diffusion.train import resolve_prior
from ddkit.errors import DDKitError
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec, build_model
from ddkit.models.teachers import cache_entry, load_or_squeeze, teacher_config
from tests.conftest import TINY_TEACHER, first_per_class

# An odd batch over 271 images: slices of 23 and 22, and a last batch of one image (rank 1 idles).
FIT_RECIPE = training.TrainRecipe(epochs=2, batch_size=45, lr=0.05)
SQUEEZE = {"train": {"epochs": 3, "batch_size": 64}, "arch": {"options": {"width": 8}}}


def tiny() -> DataSplits:
    """The `tiny` fixture of tests/conftest.py: 30 train, 10 val, 40 test images per class."""
    fmnist = load_dataset(DatasetConfig())
    return replace(fmnist, train=first_per_class(fmnist.train, 30), val=first_per_class(fmnist.val, 10),
                   test=first_per_class(fmnist.test, 40))


def fit(out: Path) -> dict:
    """Train without augmentation (weights saved to OUT/rank-R.pt), then with dsa; their accuracies."""
    train = tiny().train.subset(torch.arange(271))
    result = {}
    for augmentation in ("none", "dsa"):
        model = build_model(ModelSpec("convnet", {"width": 8}), 10, (1, 28, 28), train.mean, train.std, seed=0)
        training.fit(model, train, replace(FIT_RECIPE, augmentation=augmentation), seed=3, ddp=True)
        result[f"{augmentation}_accuracy"] = training.accuracy(model, train)
        if augmentation == "none":
            torch.save(model.state_dict(), out / f"rank-{distributed.current().rank}.pt")
    return result


def evaluate(out: Path, modes: str) -> dict:
    """Evaluate a random set in each of the comma-separated parallel MODES (results under OUT/MODE)."""
    splits = tiny()
    distilled = synthesize("random", {}, SynthesisContext(splits, 2, 0, lambda name: None))
    preset = load_eval_preset("hard-dsa-quick")
    preset = replace(preset, train=replace(preset.train, epochs=2), student=ModelSpec("convnet", {"width": 8}),
                     seeds=[0, 1, 2], test_subset=None)
    result = {}
    for mode in modes.split(","):
        (summary,) = evaluate_set(distilled, preset, splits, out / mode, parallel=mode)
        records = [json.loads(p.read_text()) for p in sorted((out / mode).glob("*/*/seed-*.json"))]
        result[mode] = {"accuracies": summary.accuracies, "records": [(r["seed"], r["parallel"], r["world_size"]) for r in records]}
    return result


def squeeze(out: Path, cache: str, stop_at_step: str = "") -> dict:
    """Squeeze a tiny teacher; with STOP_AT_STEP, every rank fails at that optimiser step (as a
    killed job would), leaving the last epoch's checkpoint behind."""
    steps = []
    schedule = training.lr_factor

    def counting(name: str, step: int, total: int) -> float:
        if stop_at_step and step == int(stop_at_step):
            raise DDKitError(f"stopped at step {step}")
        steps.append(step)
        return schedule(name, step, total)

    training.lr_factor = counting
    splits = tiny()
    config = teacher_config("convnet-bn", SQUEEZE)
    teacher = load_or_squeeze(config, splits, Path(cache))
    weights = torch.cat([v.flatten().double() for v in teacher.model.state_dict().values()])
    return {"steps": steps, "entry": str(cache_entry(config, splits, Path(cache))), "weights_sum": float(weights.sum())}


def prior(out: Path, cache: str) -> dict:
    """Squeeze the test prior (and its check teacher); its weights go to OUT/rank-R.pt."""
    splits = tiny()
    prior = resolve_prior("test-unet", splits, lambda name: load_or_squeeze(teacher_config(name, TINY_TEACHER), splits, Path(cache)),
                          Path(cache))
    torch.save(prior.model.state_dict(), out / f"rank-{distributed.current().rank}.pt")
    return {"source": prior.meta["source"], "agreement": prior.meta["metrics"]["teacher_agreement_per_class"]}


def main(out: str, command: str, *args: str) -> None:
    distributed.start(torch.device("cpu"))
    try:
        result = {"fit": fit, "evaluate": evaluate, "squeeze": squeeze, "prior": prior}[command](Path(out), *args)
        Path(out, f"rank-{distributed.current().rank}.json").write_text(json.dumps(result))
    finally:
        distributed.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
