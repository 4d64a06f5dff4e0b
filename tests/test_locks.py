"""Lock files: a second process waits for the first, and a killed holder leaves no stale lock."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from ddkit.errors import DDKitError
from ddkit.locks import exclusive, lock_path

HOLDER = """
import sys, time
from pathlib import Path
from ddkit.locks import exclusive
out, seconds = Path(sys.argv[1]), float(sys.argv[2])
with exclusive(out, "the test output"):
    Path(str(out) + ".held").write_text("yes")
    time.sleep(seconds)
    out.write_text("made by the holder")
"""


def start_holder(out, seconds):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(seconds)])
    deadline = time.time() + 60
    while not os.path.exists(str(out) + ".held"):
        assert holder.poll() is None and time.time() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return holder


def test_a_second_process_waits_for_the_holder_then_finds_its_output(tmp_path, caplog):
    out = tmp_path / "thing"
    holder = start_holder(out, 1.0)
    with caplog.at_level(logging.WARNING, logger="ddkit.locks"):
        with exclusive(out, "the test output"):
            assert out.read_text() == "made by the holder"  # we got the lock only after the holder finished
    assert holder.wait(timeout=30) == 0
    assert f"pid {holder.pid}" in caplog.text and "is making the test output; waiting" in caplog.text
    assert not lock_path(out).exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "thing"
    holder = start_holder(out, 600)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert lock_path(out).exists()  # the file stays, but the lock died with its process
    started = time.perf_counter()
    with exclusive(out, "the test output"):
        pass
    assert time.perf_counter() - started < 5 and not out.exists()


def test_a_users_file_where_the_lock_goes_is_left_alone(tmp_path):
    lock_path(tmp_path / "x").write_text("my notes")
    with pytest.raises(DDKitError, match=r"x.lock exists and is not a ddkit lock file; move it away"):
        with exclusive(tmp_path / "x", "x"):
            pass
    assert lock_path(tmp_path / "x").read_text() == "my notes"


def test_the_lock_is_released_on_errors(tmp_path):
    out = tmp_path / "new" / "x"  # its folder does not exist yet
    with pytest.raises(RuntimeError):
        with exclusive(out, "x"):
            raise RuntimeError
    with exclusive(out, "x"):
        pass
    assert not lock_path(out).exists()
