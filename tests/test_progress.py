"""Progress outside a terminal: plain, periodic, flushed lines; live bars only on a terminal."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from rich.progress import Progress

import ddkit
from ddkit.errors import DDKitError
from ddkit.progress import LineProgress, duration, make_progress, progress_interval, progress_line, steps

LINE = re.compile(r"^\d\d:\d\d:\d\d (.*)$")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def shown(stream: io.StringIO) -> list[str]:
    return [LINE.match(line).group(1) for line in stream.getvalue().splitlines()]


def test_the_line_reads_like_a_log():
    assert (progress_line("squeeze convnet-bn", "epoch", 5, 20, 70, 210, "loss 0.412")
            == "squeeze convnet-bn: epoch 5/20 (25%), 1m10s elapsed, ~3m30s left, loss 0.412")
    assert progress_line("features", "", 3, None, 4, None) == "features: 3, 4s elapsed"
    assert [duration(s) for s in (0, 59.4, 60, 3599, 7500)] == ["0s", "59s", "1m00s", "59m59s", "2h05m"]


def test_lines_at_start_at_most_every_interval_and_at_the_end():
    clock, stream = Clock(), io.StringIO()
    progress = LineProgress(Console(file=stream), interval=30, get_time=clock)
    with steps(progress, "squeeze convnet-bn", 20, unit="epoch") as bar:
        for epoch in range(20):
            clock.now += 14  # 14 s an epoch
            bar.advance(status=f"loss {1 / (epoch + 1):.3f}")
    lines = shown(stream)
    assert lines[0] == "squeeze convnet-bn: epoch 0/20 (0%), 0s elapsed"
    assert lines[1] == "squeeze convnet-bn: epoch 3/20 (15%), 42s elapsed, ~3m58s left, loss 0.333"
    assert lines[-1] == "squeeze convnet-bn: epoch 20/20 (100%), 4m40s elapsed, loss 0.050"
    assert len(lines) == 2 + 280 // 42  # start, one every 42 s (3 epochs: the first ≥ 30 s), end


def test_work_of_an_earlier_run_fills_the_bar_but_not_the_estimate(caplog):
    clock, stream = Clock(), io.StringIO()
    progress = LineProgress(Console(file=stream), interval=0, get_time=clock)
    with caplog.at_level("INFO", logger="ddkit"), steps(progress, "invert (10 batches)", 10, unit="batch") as bar:
        bar.skip(5)
        clock.now = 60
        bar.advance()
    assert shown(stream)[-1] == "invert (10 batches): batch 6/10 (60%), 1m00s elapsed, ~4m00s left"
    assert "invert (10 batches): reused what an earlier run finished (batch 5/10)" in caplog.text


def test_bars_on_a_terminal_lines_elsewhere_nothing_when_quiet():
    terminal = Console(file=io.StringIO(), force_terminal=True)
    assert type(make_progress(terminal)) is Progress
    assert type(make_progress(Console(file=io.StringIO()))) is LineProgress
    quiet = make_progress(Console(file=io.StringIO()), quiet=True)
    assert quiet.disable and not isinstance(quiet, LineProgress)


def test_the_interval_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("DDKIT_PROGRESS_SECONDS", raising=False)
    assert progress_interval() == 30
    monkeypatch.setenv("DDKIT_PROGRESS_SECONDS", "2.5")
    assert progress_interval() == 2.5
    monkeypatch.setenv("DDKIT_PROGRESS_SECONDS", "soon")
    with pytest.raises(DDKitError, match="DDKIT_PROGRESS_SECONDS='soon' is not a number of seconds"):
        progress_interval()


def test_a_real_command_prints_progress_lines_to_a_pipe(tmp_path):
    """`python -m ddkit` with stderr to a pipe, as under nohup or SLURM: lines arrive, flushed."""
    env = os.environ | {"DDKIT_PROGRESS_SECONDS": "0",
                        "PYTHONPATH": os.pathsep.join([str(Path(ddkit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "ddkit", "squeeze", "mlp", "--cache", str(tmp_path), "--dataset.train_per_class=10",
         "--train.epochs=2", "--device", "cpu"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    expected = r"\d\d:\d\d:\d\d squeeze mlp: epoch 1/2 \(50%\), \d+s elapsed, ~\d+s left, loss \d\.\d{3}"
    assert any(re.fullmatch(expected, line) for line in lines), lines
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d squeeze mlp: epoch 2/2 \(100%\), .*", line) for line in lines), lines
    assert any(re.fullmatch(r"\d\d:\d\d:\d\d INFO ddkit.models.teachers: teacher mlp: not cached yet; .*", line) for line in lines), lines
    assert "teachers on fashion-mnist" in done.stdout and "squeeze mlp" not in done.stdout
