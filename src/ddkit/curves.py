"""Training curves: every training loop logs its scalars to a small CSV, and to TensorBoard when installed.

    DIR/NAME.csv    step, then one column per scalar (rewritten atomically: never half-written)
    DIR/NAME/       one TensorBoard run (events.out.tfevents.*), when `tensorboard` is importable

A loop that resumes says so first (`resume(step)`): rows after `step`, left by the interrupted
run and about to be redone, are dropped from the CSV and purged from TensorBoard's view, so a
resumed curve continues instead of repeating steps. A loop that does not resume starts its curve
afresh. `CurveLog()` (no directory) logs nothing, so library callers need not care.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
from pathlib import Path
from typing import Any, Optional

from ddkit.runs import atomic_write_text

log = logging.getLogger(__name__)


def log_interval(total: int, rows: int = 100) -> int:
    """Log every this many steps, so a loop of `total` steps writes about `rows` rows."""
    return max(1, total // rows)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


class CurveLog:
    """One curve (`name`) under `directory`; `child(name)` is another curve below this one's name."""

    def __init__(self, directory: Optional[Path] = None, name: str = "") -> None:
        self.directory = Path(directory) if directory is not None else None
        self.name = name
        self._kept = 0  # steps an earlier run logged that still stand
        self._rows: Optional[list[dict[str, Any]]] = None  # None until opened by the first `log`
        self._writer: Any = None

    def child(self, name: str) -> "CurveLog":
        return CurveLog(self.directory, f"{self.name}/{name}" if self.name else name)

    @property
    def csv_path(self) -> Optional[Path]:
        return self.directory / f"{self.name}.csv" if self.directory is not None else None

    def resume(self, step: int) -> None:
        """Keep what an earlier run logged up to and including `step`; call before the first `log`."""
        self._kept = step

    def log(self, step: int, **scalars: float) -> None:
        if self.directory is None:
            return
        if not self.name:
            raise ValueError("log to a named curve: CurveLog(directory, name) or .child(name)")
        if self._rows is None:
            self._open()
        row = {"step": step, **{key: float(value) for key, value in scalars.items()}}
        self._rows.append(row)
        atomic_write_text(self.csv_path, rows_as_csv(self._rows))
        if self._writer is not None:
            for key, value in row.items():
                if key != "step":
                    self._writer.add_scalar(key, value, step)
            self._writer.flush()  # a killed run keeps what it logged, as the CSV does

    def close(self) -> None:
        """Release the TensorBoard writer; logging again reopens the curve where it stopped."""
        if self._writer is not None:
            self._writer.close()
        if self._rows:
            self._kept = self._rows[-1]["step"]
        self._rows, self._writer = None, None

    def __enter__(self) -> "CurveLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        self._rows = [row for row in read_rows(self.csv_path) if row["step"] <= self._kept]
        if tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides events at or after it from an earlier, interrupted writer of this run
            self._writer = SummaryWriter(log_dir=str(self.directory / self.name), purge_step=self._kept + 1)


def rows_as_csv(rows: list[dict[str, Any]]) -> str:
    """Rows as CSV text; the header is every column seen, in first-seen order (a missing value is empty)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: v if k == "step" else format(v, ".6g") for k, v in row.items()} for row in rows)
    return out.getvalue()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a curve's CSV; none if it is missing or unreadable (then the curve starts afresh)."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            return [{"step": int(row.pop("step")), **{k: float(v) for k, v in row.items() if v}} for row in csv.DictReader(handle)]
    except (OSError, ValueError, KeyError, TypeError, csv.Error):
        log.warning("curve %s is unreadable; starting it afresh", path)
        return []
