import json
from dataclasses import replace

from ddkit.data.distilled import DistilledSet
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.evaluate.fidelity import measure_fidelity
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec, build_model
from ddkit.models.teachers import Teacher, TeacherConfig
from ddkit.report import collect_rows, write_report
from ddkit.runs import RunDir


def test_report_writes_leaderboard_grids_and_plot(tiny, tiny_teacher_loader, tmp_path):
    preset = load_eval_preset("hard-dsa-quick")
    preset = replace(preset, train=replace(preset.train, epochs=2), student=ModelSpec("convnet", {"width": 8}), seeds=[0, 1])
    RunDir(tmp_path, {"test": "report"})
    for ipc in (1, 2):
        folder = tmp_path / "sets" / f"random-ipc{ipc}"
        synthesize("random", {}, SynthesisContext(tiny, ipc, 0, tiny_teacher_loader)).save(folder)
        evaluate_set(DistilledSet.load(folder), preset, tiny, folder / "eval")
    out = write_report(tmp_path)
    rows = collect_rows(tmp_path)
    assert [(r["method"], r["ipc"], len(r["accuracies"])) for r in rows] == [("random", 1, 2), ("random", 2, 2)]
    markdown = (out / "leaderboard.md").read_text()
    assert "hard-dsa-quick (QUICK)" in markdown and f"{rows[0]['mean']:.2f} ± {rows[0]['std']:.2f}" in markdown
    for name in ("leaderboard.json", "grid-random-ipc1.png", "grid-random-ipc2.png", "accuracy-hard-dsa-quick.png"):
        assert (out / name).stat().st_size > 0, name


def test_report_lists_fidelity_records(tiny, tmp_path):
    RunDir(tmp_path, {"test": "report"})
    folder = tmp_path / "sets" / "random-ipc2"
    synthesize("random", {}, SynthesisContext(tiny, 2, 0, None)).save(folder)
    spec = ModelSpec("convnet", {"width": 8})
    model = build_model(spec, 10, tiny.train.image_shape, tiny.train.mean, tiny.train.std)
    extractor = Teacher(TeacherConfig("untrained", spec), model.eval(), {"key": "untrained"})
    (record,) = measure_fidelity(DistilledSet.load(folder), folder, tiny.train, tiny.test, {"convnet": extractor})
    out = write_report(tmp_path)
    (row,) = json.loads((out / "leaderboard.json").read_text())["fidelity"]
    assert row == {"set": "random-ipc2", "method": "random", "ipc": 2, **record}
    markdown = (out / "leaderboard.md").read_text()
    assert "## Fidelity to the test distribution" in markdown
    assert f"| random-ipc2 | convnet | {record['precision']:.3f} |" in markdown


def test_leaderboard_lists_shifted_test_accuracy_when_a_preset_scores_it():
    from ddkit.report.leaderboard import leaderboard_markdown

    row = {"set": "s", "method": "prism-dfkd", "ipc": 10, "preset": "dfkd", "quick": False, "student": "convnet",
           "teacher": "t", "seeds": [0], "accuracies": [70.0], "mean": 70.0, "std": 0.0,
           "shift_means": {"rotate": 40.5, "invert": 12.25}}
    text = leaderboard_markdown([row, row | {"preset": "hard-dsa", "shift_means": {}}])
    assert "## Shifted test sets" in text and "| dfkd | convnet | prism-dfkd | 10 | 70.00 | 40.50 | 12.25 |" in text
    assert "| hard-dsa | convnet | prism-dfkd | 10 | 70.00 |" not in text.split("## Shifted")[1]
