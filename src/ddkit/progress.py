"""Progress: the CLI owns one Progress and passes it down; the API works without one.

In a terminal it draws rich's live bars. Anywhere else (CI, SLURM, `nohup ddkit … > log`) live
bars would show nothing until the command ends, so `LineProgress` prints one plain, flushed line
per task instead — when the task starts, at most every `DDKIT_PROGRESS_SECONDS` (default 30) and
when it finishes:

    12:03:04 squeeze convnet-bn: epoch 5/20 (25%), 1m10s elapsed, ~3m30s left, loss 0.412
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ddkit.errors import DDKitError

log = logging.getLogger(__name__)
INTERVAL_VARIABLE = "DDKIT_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def make_progress(console: Optional[Console] = None, quiet: bool = False) -> Progress:
    """Live bars on a terminal, plain periodic lines elsewhere, nothing at all when `quiet`."""
    console = console or Console(stderr=True)
    if quiet:
        return Progress(console=console, disable=True)
    if not console.is_terminal:
        return LineProgress(console, progress_interval())
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


def progress_interval() -> float:
    value = os.environ.get(INTERVAL_VARIABLE, "")
    if not value:
        return DEFAULT_INTERVAL
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise DDKitError(f"{INTERVAL_VARIABLE}={value!r} is not a number of seconds; set it to e.g. 30, or unset it")
    return seconds


class LineProgress(Progress):
    """rich's task bookkeeping, shown as plain lines on the console's file instead of live bars."""

    def __init__(self, console: Console, interval: float, get_time: Optional[Callable[[], float]] = None) -> None:
        super().__init__(console=console, disable=True, get_time=get_time)
        self.interval = interval
        self._shown: dict[TaskID, float] = {}  # when each task's last line was printed

    def add_task(self, description: str, start: bool = True, total: Optional[float] = 100.0, completed: int = 0,
                 visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._show(task_id)
        return task_id

    def update(self, task_id: TaskID, **changes: Any) -> None:
        finished_before = self._tasks[task_id].finished
        super().update(task_id, **changes)
        task = self._tasks[task_id]
        if (task.finished and not finished_before) or self.get_time() - self._shown[task_id] >= self.interval:
            self._show(task_id)

    def remove_task(self, task_id: TaskID) -> None:
        super().remove_task(task_id)
        self._shown.pop(task_id, None)

    def _show(self, task_id: TaskID) -> None:
        task = self._tasks[task_id]
        elapsed = task.elapsed or 0.0
        fresh = task.completed - task.fields.get("skipped", 0)  # work done by this run: the speed
        remaining = None
        if fresh > 0 and elapsed > 0 and task.total is not None and not task.finished:
            remaining = (task.total - task.completed) * elapsed / fresh
        line = progress_line(task.description, task.fields.get("unit", ""), task.completed, task.total, elapsed, remaining,
                             task.fields.get("status", ""))
        stream = self.console.file
        stream.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        stream.flush()
        self._shown[task_id] = self.get_time()


def progress_line(description: str, unit: str, completed: float, total: Optional[float], elapsed: float,
                  remaining: Optional[float], status: str = "") -> str:
    """`squeeze convnet-bn: epoch 5/20 (25%), 1m10s elapsed, ~3m30s left, loss 0.412`."""
    count = f"{unit} " if unit else ""
    if total:
        count += f"{completed:.0f}/{total:.0f} ({100 * completed / total:.0f}%)"
    else:
        count += f"{completed:.0f}"
    parts = [count, f"{duration(elapsed)} elapsed"]
    if remaining is not None:
        parts.append(f"~{duration(remaining)} left")
    if status:
        parts.append(status)
    return f"{description}: {', '.join(parts)}"


def duration(seconds: float) -> str:
    """45s, 3m30s, 2h05m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Steps:
    def __init__(self, progress: Optional[Progress], description: str, total: int, unit: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total, status="", unit=unit) if progress else None
        self.skipped = 0

    def advance(self, count: int = 1, status: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            fields = {"status": status} if status is not None else {}
            self._progress.update(self._task, advance=count, **fields)

    def skip(self, count: int = 1) -> None:
        """Count work an earlier run finished: it fills the bar but does not speed up the estimate."""
        self.skipped += count
        if self._progress is not None and self._task is not None and count:
            self._progress.update(self._task, advance=count, skipped=self.skipped)


@contextmanager
def steps(progress: Optional[Progress], description: str, total: int, keep: bool = False, unit: str = "") -> Iterator[Steps]:
    """A task of `total` `unit`s (epochs, batches...) on `progress`, if any; says what was resumed."""
    bar = Steps(progress, description, total, unit)
    try:
        yield bar
    finally:
        if bar.skipped:
            log.info("%s: reused what an earlier run finished (%s%d/%d)", description, f"{unit} " if unit else "", bar.skipped, total)
        if progress is not None and bar._task is not None and not keep:
            progress.remove_task(bar._task)
