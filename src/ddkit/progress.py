"""Progress bars: the CLI owns one rich Progress and passes it down; the API works without one."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(console: Optional[Console] = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
        console=console, transient=False,
    )


class Steps:
    def __init__(self, progress: Optional[Progress], description: str, total: int) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total, status="") if progress else None

    def advance(self, count: int = 1, status: str | None = None) -> None:
        if self._progress is not None and self._task is not None:
            fields = {"status": status} if status is not None else {}
            self._progress.update(self._task, advance=count, **fields)


@contextmanager
def steps(progress: Optional[Progress], description: str, total: int, keep: bool = False) -> Iterator[Steps]:
    bar = Steps(progress, description, total)
    try:
        yield bar
    finally:
        if progress is not None and bar._task is not None and not keep:
            progress.remove_task(bar._task)
