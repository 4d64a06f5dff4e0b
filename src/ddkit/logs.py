"""Log records of the `ddkit` loggers (one per module), as the command line shows them.

Everything that is neither a progress bar nor a result table is a log record: a cached teacher
reused, a prior loaded, work resumed, a warning. In a terminal records go through rich's console
(stderr, beside the progress bars); anywhere else they are plain `HH:MM:SS LEVEL name: message`
lines. Python warnings (`warnings.warn`) are shown the same way.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.logging import RichHandler

LOGGER, WARNINGS = "ddkit", "py.warnings"
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def make_handler(console: Console) -> logging.Handler:
    if console.is_terminal:
        return RichHandler(console=console, show_path=False, log_time_format="%H:%M:%S")
    handler = logging.StreamHandler(console.file)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT, datefmt="%H:%M:%S"))
    return handler


def configure_logging(level: int, console: Console) -> Callable[[], None]:
    """Show ddkit's records at `level` and above (and Python warnings) on `console`; returns the undo."""
    handler = make_handler(console)
    loggers = [logging.getLogger(LOGGER), logging.getLogger(WARNINGS)]
    previous, show_warning = [logger.level for logger in loggers], warnings.showwarning
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(level)
    warnings.showwarning = warning_as_record

    def undo() -> None:
        warnings.showwarning = show_warning
        for logger, old in zip(loggers, previous):
            logger.removeHandler(handler)
            logger.setLevel(old)

    return undo


def warning_as_record(message: Warning | str, category: type[Warning], filename: str, lineno: int, *_: Any) -> None:
    """`warnings.showwarning` as one log line (logging.captureWarnings would add the source line)."""
    logging.getLogger(WARNINGS).warning("%s: %s (%s:%d)", category.__name__, message, Path(filename).name, lineno)
