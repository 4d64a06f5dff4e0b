from dataclasses import replace

from ddkit.data.distilled import DistilledSet
from ddkit.evaluate import evaluate_set, load_eval_preset
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec
from ddkit.report import collect_rows, write_report


def test_report_writes_leaderboard_grids_and_plot(tiny, tiny_teacher_loader, tmp_path):
    preset = load_eval_preset("hard-dsa-quick")
    preset = replace(preset, train=replace(preset.train, epochs=2), student=ModelSpec("convnet", {"width": 8}), seeds=[0, 1])
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
