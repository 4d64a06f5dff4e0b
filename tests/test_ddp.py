"""Stages on several processes, as under `torchrun --nproc_per_node N`: each test starts N copies
of tests/ddp_worker.py on gloo (one thread each: thread count, not process count, changes float
bytes) and compares what they computed with one process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from ddkit.diffusion.train import resolve_prior
from ddkit.locks import lock_path
from ddkit.models.teachers import cache_entry, load_or_squeeze, teacher_config
from tests.ddp_worker import SQUEEZE
from tests.ranks import ROOT, finish, start_ranks

WORKER = ROOT / "tests" / "ddp_worker.py"


def launch(processes: int, out: Path, *args: str, timeout: float = 300) -> tuple[list[int], list[str]]:
    """Start `processes` ranks of the worker; (their exit codes, their outputs)."""
    out.mkdir(parents=True, exist_ok=True)
    return finish(start_ranks(processes, [sys.executable, str(WORKER), str(out), *args], ROOT), timeout)


def run(processes: int, out: Path, *args: str) -> list[dict]:
    """Every rank's result; the ranks must all succeed."""
    codes, outputs = launch(processes, out, *args)
    assert codes == [0] * processes, "\n".join(outputs)[-3000:]
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(processes)]


def test_evaluation_on_two_processes_spread_exactly_or_under_ddp(tmp_path):
    (alone,) = run(1, tmp_path / "one", "evaluate", "spread")
    pair = run(2, tmp_path / "two", "evaluate", "spread,ddp")
    assert pair[0] == pair[1]  # every rank returns the full results
    spread, alone = pair[0]["spread"], alone["spread"]
    assert spread["accuracies"] == alone["accuracies"] and len(set(alone["accuracies"])) > 1  # each seed, exactly
    assert alone["records"] == [[seed, "spread", 1] for seed in (0, 1, 2)]
    assert spread["records"] == [[seed, "spread", 2] for seed in (0, 1, 2)]
    assert pair[0]["ddp"]["records"] == [[seed, "ddp", 2] for seed in (0, 1, 2)]
    assert sorted(p.name for p in (tmp_path / "two" / "ddp").rglob("curves/*.csv")) == ["seed-0.csv", "seed-1.csv", "seed-2.csv"]


def test_a_ddp_fit_on_two_processes_matches_one_within_a_tolerance(tmp_path):
    """Without augmentation only the float summation order differs; with it, each rank draws its
    slice's augmentation from its own seed, so the runs differ and only the accuracy stays close."""
    (alone,) = run(1, tmp_path / "one", "fit")
    pair = run(2, tmp_path / "two", "fit")
    assert pair[0] == pair[1]
    one, first, second = (torch.load(tmp_path / f, weights_only=True) for f in ("one/rank-0.pt", "two/rank-0.pt", "two/rank-1.pt"))
    for key, value in one.items():
        assert torch.equal(first[key], second[key]), key  # one model, on every rank
        assert torch.allclose(first[key], value, atol=1e-3), key  # one thread more alone moves them 1.4e-4
    assert any(not torch.equal(first[k], one[k]) for k in one)  # it really trained on two processes
    assert abs(pair[0]["dsa_accuracy"] - alone["dsa_accuracy"]) < 10, (alone, pair)


def test_squeeze_on_two_processes_writes_one_teacher_that_one_process_loads(tmp_path, tiny):
    cache = tmp_path / "cache"
    pair = run(2, tmp_path / "two", "squeeze", str(cache))
    assert pair[0]["weights_sum"] == pair[1]["weights_sum"] and len(pair[0]["steps"]) == 15  # 3 epochs of 5 batches
    entry = Path(pair[0]["entry"])
    assert sorted(p.name for p in entry.iterdir()) == ["curves", "manifest.json", "model.safetensors"]
    assert not list(entry.parent.glob("*.lock")) and not list(entry.rglob("*.tmp"))
    stamp = (entry / "model.safetensors").stat().st_mtime_ns
    teacher = load_or_squeeze(teacher_config("convnet-bn", SQUEEZE), tiny, cache)
    assert (entry / "model.safetensors").stat().st_mtime_ns == stamp  # loaded, not squeezed again
    weights = torch.cat([v.flatten().double() for v in teacher.model.state_dict().values()])
    assert float(weights.sum()) == pair[0]["weights_sum"]


def test_an_interrupted_squeeze_resumes_from_its_epoch_checkpoint_on_another_world_size(tmp_path):
    codes, outputs = launch(2, tmp_path / "stopped-2", "squeeze", str(tmp_path / "a"), "7")  # in epoch 2 of 3
    assert codes == [1, 1] and all("stopped at step 7" in output for output in outputs)
    (entry,) = (tmp_path / "a" / "teachers").glob("*/*")
    assert (entry / "resume.pt").exists() and not (entry / "model.safetensors").exists()
    (resumed,) = run(1, tmp_path / "one", "squeeze", str(tmp_path / "a"))
    assert resumed["steps"] == list(range(5, 15))  # epochs 2 and 3: epoch 1 came from the checkpoint
    codes, _ = launch(1, tmp_path / "stopped-1", "squeeze", str(tmp_path / "b"), "12")  # in epoch 3
    assert codes == [1]
    pair = run(2, tmp_path / "two", "squeeze", str(tmp_path / "b"))
    assert pair[0]["steps"] == pair[1]["steps"] == list(range(10, 15))
    entry = Path(pair[0]["entry"])
    assert (entry / "model.safetensors").exists() and not (entry / "resume.pt").exists()


def test_an_error_on_rank_0_reaches_the_other_ranks_instead_of_leaving_them_waiting(tmp_path, tiny):
    entry = cache_entry(teacher_config("convnet-bn", SQUEEZE), tiny, tmp_path)
    entry.parent.mkdir(parents=True)
    lock_path(entry).write_text("the user's notes")  # rank 0 refuses to take this lock
    codes, outputs = launch(2, tmp_path / "out", "squeeze", str(tmp_path), timeout=120)
    assert codes == [1, 1], outputs
    assert all("DDKitError: " in output and "is not a ddkit lock file" in output for output in outputs), outputs


def test_a_prior_squeezed_on_two_processes_is_one_prior_that_one_process_loads(tmp_path, tiny):
    """Every rank draws the whole batch's noise and timesteps: only float summation order differs."""
    pair = run(2, tmp_path / "two", "prior", str(tmp_path / "a"))
    assert pair[0] == pair[1] and not list(tmp_path.rglob("*.partial"))
    two, other = (torch.load(tmp_path / "two" / f"rank-{r}.pt", weights_only=True) for r in (0, 1))
    assert all(torch.equal(two[k], other[k]) for k in two)
    loaded = resolve_prior("test-unet", tiny, lambda name: pytest.fail("no teacher needed to load"), tmp_path / "a")
    assert loaded.meta["source"] == pair[0]["source"]
    assert all(torch.equal(two[k], v) for k, v in loaded.model.state_dict().items())
    run(1, tmp_path / "one", "prior", str(tmp_path / "b"))
    one = torch.load(tmp_path / "one" / "rank-0.pt", weights_only=True)
    assert all(torch.allclose(two[k], one[k], atol=1e-4) for k in one) and any(not torch.equal(two[k], one[k]) for k in one)
