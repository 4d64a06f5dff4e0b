"""Start N processes of a command as `torchrun --nproc_per_node N` would (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR/PORT), one thread each: thread count, not process count, changes float
bytes, so the one-process reference runs one thread too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def default_sigint() -> None:
    """A test run started in the background (`nohup make test &`) ignores SIGINT, and its children
    inherit that: the ranks must stop on Ctrl-C as they would in a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_ranks(processes: int, command: list[str], cwd: Path, env: Optional[dict[str, str]] = None,
                rank_args: Optional[dict[int, list[str]]] = None) -> list[subprocess.Popen]:
    """`command` (+ `rank_args[rank]`) as ranks 0..processes-1; one process runs without torchrun's variables."""
    shared = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])} | (env or {})
    if processes > 1:
        shared |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": str(processes)}
    return [subprocess.Popen([*command, *(rank_args or {}).get(rank, [])], cwd=cwd, text=True,
                             env=shared | ({"RANK": str(rank), "LOCAL_RANK": str(rank)} if processes > 1 else {}),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=default_sigint)
            for rank in range(processes)]


def finish(ranks: list[subprocess.Popen], timeout: float = 300) -> tuple[list[int], list[str]]:
    """(exit codes, outputs) of the ranks; none outlives the call."""
    try:
        outputs = [rank.communicate(timeout=timeout)[0] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    return [rank.returncode for rank in ranks], outputs
