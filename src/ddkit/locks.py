"""One process at a time per output: lock files beside what is being made.

Two processes that squeeze the same teacher, train the same prior or write the same set would
both do the work and race to write it. Whoever takes `<output>.lock` first does the work; the
others wait, then find the finished output and reuse it.

The lock is an advisory `flock` on that file, so it is held exactly as long as its process lives:
a process killed with SIGKILL, or a node that dies, leaves no stale lock behind (the kernel or the
file server drops it). That is the stale-lock rule, and no timeout guesses at it. The file itself
only tells a waiting user which process holds it; the holder removes it when done.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from ddkit.errors import DDKitError

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2


def lock_path(output: Path) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".lock")


@contextmanager
def exclusive(output: Path, what: str) -> Iterator[None]:
    """Hold the lock of `output` (making `what`) for the block; wait while another process holds it."""
    path = lock_path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(path, what)
    if not _is_ddkit_lock(fd):
        _unlock(fd)  # the file stays: it is not ddkit's to empty or remove
        raise DDKitError(f"{path} exists and is not a ddkit lock file; move it away (ddkit locks <output>.lock "
                         "beside what it makes)")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": what,
                                 "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode())
        yield
    finally:
        # Unlink before unlocking: a waiter that then gets the lock sees that the path no longer
        # names its file and starts again on a fresh one, so two holders never coexist.
        path.unlink(missing_ok=True)
        _unlock(fd)


def _unlock(fd: int) -> None:
    with suppress(OSError):  # a file system without locks never locked it
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _is_ddkit_lock(fd: int) -> bool:
    """Empty (just made, or left by a killed holder mid-start) or a holder note ddkit wrote."""
    content = os.pread(fd, 4096, 0)
    if not content:
        return True
    try:
        note = json.loads(content)
    except ValueError:
        return False
    return isinstance(note, dict) and {"pid", "host", "what"} <= note.keys()


def _acquire(path: Path, what: str) -> int:
    announced = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not announced:
                log.warning("another ddkit process (%s) is making %s; waiting for it to finish", _holder(path), what)
                announced = True
            os.close(fd)
            time.sleep(POLL_SECONDS)
            continue
        except OSError as err:  # a file system without locks: work unguarded rather than not at all
            log.warning("cannot lock %s (%s); make sure no other ddkit process makes %s at the same time",
                        path, err.strerror, what)
            return fd
        if _same_file(fd, path):
            return fd
        _unlock(fd)  # the previous holder removed this file: take a fresh one


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _holder(path: Path) -> str:
    try:
        holder = json.loads(path.read_text())
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "just starting"
