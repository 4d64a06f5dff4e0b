"""`ddkit synthesize` under torchrun: N processes (gloo, one thread each) make the same bytes as one.

Each rank is started as torchrun would start it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT):
`python -m ddkit ...`. Thread count, not process count, changes float bytes, so every process,
the one-process reference included, runs one thread."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ddkit.distributed import shard

ROOT = Path(__file__).resolve().parents[1]
DATA = ["--device", "cpu", "--dataset.train_per_class=20", "--dataset.val_size=50"]
TEACHER = "arch: {name: convnet-bn, options: {width: 8}}\ntrain: {epochs: 1, batch_size: 128, augmentation: none}\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(processes: int, args: list[str], cwd: Path, cache: Path, rank_args: dict[int, list[str]] | None = None) -> list[subprocess.Popen]:
    env = os.environ | {"OMP_NUM_THREADS": "1", "DDKIT_CACHE": str(cache), "PYTHONPATH": str(ROOT / "src")}
    if processes > 1:
        env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(processes)}
    return [subprocess.Popen([sys.executable, "-m", "ddkit", *args, *(rank_args or {}).get(rank, [])], cwd=cwd, text=True,
                             env=env | ({"RANK": str(rank), "LOCAL_RANK": str(rank)} if processes > 1 else {}),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            for rank in range(processes)]


def finish(ranks: list[subprocess.Popen], timeout: float = 240) -> tuple[list[int], list[str]]:
    try:
        outputs = [rank.communicate(timeout=timeout)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    return [rank.returncode for rank in ranks], outputs


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
