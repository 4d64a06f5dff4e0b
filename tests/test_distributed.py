"""`ddkit synthesize` under torchrun: N processes (gloo, one thread each; tests/ranks.py) make the
same bytes as one."""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path

import pytest

from ddkit.distributed import shard
from tests.ranks import finish, start_ranks

DATA = ["--device", "cpu", "--dataset.train_per_class=20", "--dataset.val_size=50"]
TEACHER = "arch: {name: convnet-bn, options: {width: 8}}\ntrain: {epochs: 1, batch_size: 128, augmentation: none}\n"


def start(processes: int, args: list[str], cwd: Path, cache: Path, rank_args: dict[int, list[str]] | None = None) -> list:
    return start_ranks(processes, [sys.executable, "-m", "ddkit", *args], cwd, {"DDKIT_CACHE": str(cache)}, rank_args)


def ddkit(processes: int, args: list[str], cwd: Path, cache: Path) -> list[str]:
    codes, outputs = finish(start(processes, args, cwd, cache))
    assert codes == [0] * processes, "\n".join(outputs)[-3000:]
    return outputs


def digest(folder: Path) -> str:
    return hashlib.sha256((folder / "tensors.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder with a tiny teacher recipe, and a cache holding that teacher and the test prior."""
    where = tmp_path_factory.mktemp("torchrun")
    (where / "t.yaml").write_text(TEACHER)
    ddkit(1, ["squeeze", "t.yaml", *DATA], where, where / "cache")
    return where


def sre2l(ipc: int, out: str, iterations: int = 3) -> list[str]:
    return ["synthesize", "sre2l", "--ipc", str(ipc), "--out", out, *DATA, "--logit_teachers=[t.yaml]",
            "--bn_teachers=[t.yaml]", f"--iterations={iterations}"]


def test_shard_is_round_robin_and_covers_every_item_once():
    from ddkit.distributed import World

    parts = [shard(list(range(7)), World(rank, 3)) for rank in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]


def test_an_inversion_set_is_the_same_bytes_from_one_process_and_from_two(place):
    ddkit(1, sre2l(2, "one"), place, place / "cache")
    outputs = ddkit(2, sre2l(2, "two"), place, place / "cache")
    assert digest(place / "one") == digest(place / "two")
    assert '"world_size": 2' in (place / "two" / "manifest.json").read_text()
    assert "invert" in outputs[0] and "invert" not in outputs[1]  # rank 0 alone shows progress


def test_a_guided_diffusion_set_is_the_same_bytes_from_one_process_and_from_two(place):
    args = ["synthesize", "diffusion", "--ipc", "2", *DATA, "--prior=test-unet", "--sampler.steps=2"]
    ddkit(1, [*args, "--out", "one-diffusion"], place, place / "cache")  # trains the prior into the cache first
    ddkit(2, [*args, "--out", "two-diffusion"], place, place / "cache")
    assert digest(place / "one-diffusion") == digest(place / "two-diffusion")


def test_a_run_interrupted_on_one_process_resumes_on_two_with_the_same_bytes(place):
    """Items depend only on their seeds, so the world size may change between a run and its resume."""
    ddkit(1, sre2l(3, "reference", iterations=300), place, place / "cache")
    (first,) = start(1, sre2l(3, "resumed", iterations=300), place, place / "cache")
    partial = place / "resumed.partial"
    deadline = time.monotonic() + 120
    while len(list(partial.glob("*.safetensors"))) < 2 and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    code, output = first.communicate(timeout=60)[0], first.returncode
    assert output == 130 and len(list(partial.glob("*.safetensors"))) == 2, code[-2000:]
    outputs = ddkit(2, sre2l(3, "resumed", iterations=300), place, place / "cache")
    assert "2 processes for 1 unfinished work items" in outputs[0]  # the idle rank is named, not an error
    assert digest(place / "resumed") == digest(place / "reference")
    assert not partial.exists()


def test_ranks_launched_with_different_options_stop_with_one_line_each(place):
    codes, outputs = finish(start(2, sre2l(1, "disagree"), place, place / "cache", rank_args={1: ["--r_bn=0.5"]}))
    assert codes == [2, 2], outputs
    assert "[rank 0] rank 1 has a different set configuration or dataset than rank 0" in outputs[0]
    assert "Traceback" not in "".join(outputs) and not (place / "disagree").exists()


def test_a_pipeline_on_two_processes_writes_each_output_once_and_records_the_world_size(place):
    (place / "small.yaml").write_text(
        "dataset: {name: fashion-mnist, train_per_class: 20, val_size: 50}\nmethods: [sre2l]\nipcs: [2]\n"
        "method_options: {sre2l: {iterations: 3, logit_teachers: [t.yaml], bn_teachers: [t.yaml]}}\n"
        "eval_presets: [hard-dsa-quick]\n")
    outputs = ddkit(2, ["run", "small.yaml", "--out", "run", "--device", "cpu"], place, place / "cache")
    run = place / "run"
    assert "test top-1" in outputs[0] and "test top-1" not in outputs[1]
    assert json.loads((run / "manifest.json").read_text())["environment"]["world_size"] == 2
    seeds = [json.loads(p.read_text()) for p in (run / "sets" / "sre2l-ipc2" / "eval").rglob("seed-*.json")]
    assert len(seeds) == 3 and {(s["parallel"], s["world_size"]) for s in seeds} == {("spread", 2)}
    assert (run / "report" / "leaderboard.md").exists()
    assert not list(run.rglob("*.lock")) and not list(run.rglob("*.partial"))
