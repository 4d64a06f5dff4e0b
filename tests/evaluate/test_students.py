from dataclasses import replace

import torch

from ddkit.evaluate import evaluate_set, load_eval_preset, read_summaries
from ddkit.evaluate.students import soft_label_loss
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec
from ddkit.training import TrainRecipe


def quick(name, epochs=15, **changes):
    preset = load_eval_preset(name)
    return replace(preset, train=replace(preset.train, epochs=epochs), student=ModelSpec("convnet", {"width": 16}), **changes)


def test_students_beat_chance_and_repeat_exactly(tiny, tiny_teacher_loader, tmp_path):
    distilled = synthesize("random", {}, SynthesisContext(tiny, 10, 0, tiny_teacher_loader))
    preset = quick("hard-dsa-quick", seeds=[0, 1, 2], test_subset=None)
    (summary,) = evaluate_set(distilled, preset, tiny, tmp_path / "a")
    assert summary.mean > 30.0, summary  # 10 classes: chance is 10 %
    (again,) = evaluate_set(distilled, preset, tiny, tmp_path / "b")
    assert again.accuracies == summary.accuracies
    assert read_summaries(tmp_path / "a")[0] == summary


def test_finished_seeds_are_reused_but_not_after_the_preset_changes(tiny, tiny_teacher_loader, tmp_path):
    distilled = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    preset = quick("hard-dsa-quick", epochs=2, seeds=[0])
    evaluate_set(distilled, preset, tiny, tmp_path)
    result = next(tmp_path.glob("*/*/seed-0.json"))
    stamp = result.stat().st_mtime_ns
    evaluate_set(distilled, preset, tiny, tmp_path)
    assert result.stat().st_mtime_ns == stamp
    evaluate_set(distilled, replace(preset, train=replace(preset.train, lr=0.02)), tiny, tmp_path)
    assert result.stat().st_mtime_ns != stamp


def test_soft_kd_uses_the_teacher_and_cross_architecture(tiny, tiny_teacher_loader, tmp_path):
    distilled = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    preset = quick("soft-kd-quick", epochs=3, seeds=[0], test_subset=None)
    students = [ModelSpec("convnet", {"width": 8}), ModelSpec("mlp", {"hidden": [32]})]
    summaries = evaluate_set(distilled, preset, tiny, tmp_path, students, tiny_teacher_loader)
    assert [s.student for s in summaries] == ["convnet(width=8)", "mlp(hidden=[32])"]
    assert all(s.teacher.startswith("convnet-bn-") for s in summaries)


def test_soft_label_loss_is_zero_for_a_perfect_student():
    teacher = torch.nn.Linear(4, 3)
    x = torch.randn(5, 4)
    loss = soft_label_loss(teacher, 4.0)
    assert loss(teacher(x), x, torch.arange(5)).abs() < 1e-6
    assert loss(torch.zeros(5, 3), x, torch.arange(5)) > 0


def test_recipe_rejects_unknown_augmentation():
    import pytest

    from ddkit.errors import DDKitError

    with pytest.raises(DDKitError, match="unknown augmentation 'mixup'"):
        TrainRecipe(augmentation="mixup")
