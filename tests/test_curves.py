"""CurveLog: CSV always, a TensorBoard run when tensorboard is installed, resume without repeats."""

import csv

import pytest

from ddkit.curves import CurveLog, log_interval, read_rows


def rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_rows_go_to_a_csv_named_after_the_curve_and_its_children(tmp_path):
    root = CurveLog(tmp_path)
    with root.child("guidance").child("c0001") as curve:
        curve.log(1, ModeGuidance=0.5)
        curve.log(2, ModeGuidance=0.25, KernelGuidance=2.0)
        curve.log(3, KernelGuidance=1.0)
    table = rows(tmp_path / "guidance" / "c0001.csv")
    assert list(table[0]) == ["step", "ModeGuidance", "KernelGuidance"]
    assert [(r["step"], r["ModeGuidance"], r["KernelGuidance"]) for r in table] == [("1", "0.5", ""), ("2", "0.25", "2"), ("3", "", "1")]


def test_no_directory_logs_nothing_and_a_nameless_curve_is_refused(tmp_path):
    CurveLog().child("x").log(1, loss=1.0)  # the API's default: nothing to write, nothing written
    with pytest.raises(ValueError, match="named curve"):
        CurveLog(tmp_path).log(1, loss=1.0)
    assert not list(tmp_path.iterdir())


def test_a_resumed_curve_continues_and_a_restarted_one_starts_afresh(tmp_path):
    with CurveLog(tmp_path, "train") as first:
        for step in (1, 2, 3):
            first.log(step, loss=10.0 - step)
    resumed = CurveLog(tmp_path, "train")
    resumed.resume(2)  # the interrupted run's step 3 is redone
    with resumed:
        resumed.log(3, loss=0.5)
        resumed.log(4, loss=0.25)
    assert [(r["step"], r["loss"]) for r in read_rows(tmp_path / "train.csv")] == [(1, 9.0), (2, 8.0), (3, 0.5), (4, 0.25)]
    with CurveLog(tmp_path, "train") as restarted:  # no resume: a loop that starts over
        restarted.log(1, loss=3.0)
    assert read_rows(tmp_path / "train.csv") == [{"step": 1, "loss": 3.0}]


def test_an_unreadable_csv_starts_the_curve_afresh(tmp_path, caplog):
    (tmp_path / "train.csv").write_text("step,loss\nnot a number,x\n")
    curve = CurveLog(tmp_path, "train")
    curve.resume(5)
    curve.log(6, loss=1.0)
    curve.close()
    assert read_rows(tmp_path / "train.csv") == [{"step": 6, "loss": 1.0}]
    assert "unreadable" in caplog.text


def test_log_interval_gives_about_a_hundred_rows():
    assert log_interval(1000) == 10 and log_interval(50) == 1 and log_interval(0) == 1


def test_tensorboard_events_are_readable_and_a_resume_purges_the_redone_steps(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with CurveLog(tmp_path, "train") as first:
        for step in (1, 2, 3):
            first.log(step, loss=float(step))
    resumed = CurveLog(tmp_path, "train")
    resumed.resume(1)
    with resumed:
        resumed.log(2, loss=20.0)
    events = EventAccumulator(str(tmp_path / "train"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(1, 1.0), (2, 20.0)]
