"""Log records: plain lines outside a terminal, rich's console on one; --verbose and --quiet."""

import io
import logging
import re
import sys
import warnings

import pytest
from rich.console import Console

from ddkit.cli import main
from ddkit.logs import configure_logging


def test_plain_lines_outside_a_terminal_and_the_undo_restores_the_logger():
    stream = io.StringIO()
    before = logging.getLogger("ddkit").level
    undo = configure_logging(logging.DEBUG, Console(file=stream))
    try:
        logging.getLogger("ddkit.models.teachers").debug("teacher %s: reusing %s", "mlp", "/cache/mlp-1")
        warnings.warn("shown like any other record", stacklevel=1)
    finally:
        undo()
    logging.getLogger("ddkit.models.teachers").warning("after the undo: not on this console")
    lines = stream.getvalue().splitlines()
    assert re.fullmatch(r"\d\d:\d\d:\d\d DEBUG ddkit.models.teachers: teacher mlp: reusing /cache/mlp-1", lines[0]), lines
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING py.warnings: UserWarning: shown like any other record \(test_logs.py:\d+\)", lines[1]), lines
    assert len(lines) == 2 and logging.getLogger("ddkit").level == before


def test_a_terminal_gets_rich_records_at_the_chosen_level():
    stream = io.StringIO()
    undo = configure_logging(logging.WARNING, Console(file=stream, force_terminal=True, width=200))
    try:
        logging.getLogger("ddkit.pipeline").info("hidden by --quiet")
        logging.getLogger("ddkit.pipeline").warning("a warning stays")
    finally:
        undo()
    text = stream.getvalue()
    assert "a warning stays" in text and "ddkit.pipeline: a warning stays" not in text and "hidden" not in text


def ddkit(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["ddkit", *args])
    main()
    out = capsys.readouterr()
    return out.out, out.err


def test_quiet_silences_messages_and_progress_and_verbose_conflicts_with_it(tmp_path, monkeypatch, capsys):
    command = ["synthesize", "herding", "--ipc", "1", "--dataset.train_per_class=5", "--teacher=mlp", "--cache", str(tmp_path / "cache")]
    monkeypatch.setenv("DDKIT_PROGRESS_SECONDS", "0")
    _, err = ddkit(monkeypatch, capsys, *command, "--out", str(tmp_path / "a"))
    assert re.search(r"^\d\d:\d\d:\d\d INFO ddkit.cli: 10 images \(1 per class\) in ", err, re.M), err
    assert re.search(r"^\d\d:\d\d:\d\d features \(mlp\): chunk 1/1 \(100%\)", err, re.M), err
    _, err = ddkit(monkeypatch, capsys, "-q", *command, "--out", str(tmp_path / "b"))
    assert err == ""
    with pytest.raises(SystemExit) as done:
        ddkit(monkeypatch, capsys, "-v", "-q", "list", "methods")
    assert done.value.code == 2 and "--verbose and --quiet contradict each other" in capsys.readouterr().err
