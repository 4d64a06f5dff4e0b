import json
from dataclasses import replace

import torch

from ddkit.curves import read_rows
from ddkit.evaluate import evaluate_set, load_eval_preset, read_summaries
from ddkit.evaluate.students import kd_loss, mse_ce_loss, set_kd_loss
from ddkit.methods import SynthesisContext, synthesize
from ddkit.models import ModelSpec
from ddkit.relabel import StoredLabels
from ddkit.training import Batch, TrainRecipe


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
    curve = read_rows(result.parent / "curves" / "seed-0.csv")  # retrained from scratch: its curve too
    assert [row["step"] for row in curve] == [1, 2] and curve[0]["lr"] == 0.02


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
    loss = kd_loss(teacher, 4.0)
    batch = Batch(x, torch.arange(5), 0)
    assert loss(teacher(x), batch).abs() < 1e-6
    assert loss(torch.zeros(5, 3), batch) > 0


def test_set_kd_loss_is_kd_from_the_stored_probabilities():
    teacher_logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    loss = set_kd_loss(torch.softmax(teacher_logits, dim=1), 4.0)
    batch = Batch(torch.zeros(2, 1), torch.tensor([3, 1]), 0)
    assert loss(teacher_logits[[3, 1]] + 5.0, batch).abs() < 1e-5  # the teacher itself, shifted: nothing to learn
    assert torch.isclose(loss(torch.zeros(2, 3), batch), kd_loss(lambda x: teacher_logits[[3, 1]], 4.0)(torch.zeros(2, 3), batch))
    one_hot = set_kd_loss(torch.eye(3)[[0, 2]], 4.0)(torch.randn(2, 3), Batch(torch.zeros(2, 1), torch.arange(2), 0))
    assert torch.isfinite(one_hot) and one_hot > 0


def test_recipe_rejects_unknown_augmentation():
    import pytest

    from ddkit.errors import DDKitError

    with pytest.raises(DDKitError, match="unknown augmentation 'mixup'"):
        TrainRecipe(augmentation="mixup")


def test_mse_ce_loss_is_the_weighted_cross_entropy_for_a_perfect_regressor():
    teacher = torch.nn.Linear(4, 3)
    x, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    batch = Batch(x, torch.arange(5), 0)
    logits = teacher(x)
    expected = 0.1 * torch.nn.functional.cross_entropy(logits, labels)
    assert torch.isclose(mse_ce_loss(teacher, labels, 0.1)(logits, batch), expected)


def test_family_presets_run_with_ensemble_and_stored_labels(tiny, tiny_teacher_loader, tmp_path):
    from ddkit.models.teachers import TeacherPool

    distilled = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    pool = lambda name: TeacherPool.__call__(ensemble_pool, name)  # noqa: E731
    ensemble_pool = TeacherPool(tiny)
    ensemble_pool._loaded = {n: tiny_teacher_loader(n) for n in ("convnet-bn", "resnet", "mobilenet")}
    for name in ("soft-kd-ensemble", "prism-mse"):
        (summary,) = evaluate_set(distilled, quick(name, epochs=2, seeds=[0]), tiny, tmp_path, None, pool)
        assert summary.teacher.count("+") == 2 and 0 <= summary.mean <= 100
    stored = quick("soft-kd-stored", epochs=3, seeds=[0])
    (summary,) = evaluate_set(distilled, stored, tiny, tmp_path / "eval", None, tiny_teacher_loader)
    (record,) = (tmp_path / "relabel").glob("soft-kd-stored-*/seed-0.safetensors")
    result = json.loads(next((tmp_path / "eval").glob("soft-kd-stored/*/seed-0.json")).read_text())
    assert result["stored_label_bytes"] == 180  # 3 epochs x 20 images x 3 bytes (top-2 of 10 classes)
    assert StoredLabels.load(record).shape == (3, 20, 2)
    evaluate_set(distilled, replace(stored, train=replace(stored.train, lr=0.002)), tiny, tmp_path / "eval", None, tiny_teacher_loader)
    assert len(list((tmp_path / "relabel").iterdir())) == 2  # another recipe: another record


def test_the_dfkd_trainer_improves_a_student_from_teacher_outputs_alone(tiny, tiny_teacher_loader, tmp_path):
    """The transfer set's own labels are scrambled: only the teacher's soft outputs can teach."""
    distilled = synthesize("random", {}, SynthesisContext(tiny, 10, 0, tiny_teacher_loader))
    distilled.labels = distilled.labels[torch.randperm(len(distilled.labels), generator=torch.Generator().manual_seed(0))]
    preset = load_eval_preset("dfkd-quick")
    preset = replace(preset, student=ModelSpec("convnet", {"width": 16}), seeds=[0], test_subset=None)
    untrained = replace(preset, train=replace(preset.train, steps=1, lr=1e-6))
    (before,) = evaluate_set(distilled, untrained, tiny, tmp_path / "a", teacher_loader=tiny_teacher_loader)
    (after,) = evaluate_set(distilled, replace(preset, train=replace(preset.train, steps=120)), tiny, tmp_path / "b",
                            teacher_loader=tiny_teacher_loader)
    assert after.mean > before.mean + 20, (before, after)
    assert set(after.shift_means) == {"rotate", "blur", "noise", "invert", "elastic"}
    assert after.shift_means["blur"] > before.shift_means["blur"]


def test_a_step_budget_sets_the_epochs_whatever_the_set_size():
    recipe = TrainRecipe(steps=100, batch_size=64)
    assert recipe.epochs_for(100) == 50 and recipe.epochs_for(6400) == 1 and recipe.epochs_for(640) == 10


def test_the_parallel_mode_spreads_small_sets_and_trains_large_ones_over_all_ranks():
    import pytest

    from ddkit.distributed import World
    from ddkit.errors import DDKitError
    from ddkit.evaluate.students import DDP_MIN_IMAGES, parallel_mode

    hard, stored, pair = load_eval_preset("hard-dsa-quick"), load_eval_preset("soft-kd-stored"), World(0, 2)
    assert parallel_mode("auto", hard, DDP_MIN_IMAGES, pair) == "ddp"
    assert parallel_mode("auto", hard, DDP_MIN_IMAGES - 1, pair) == "spread"
    assert parallel_mode("auto", hard, DDP_MIN_IMAGES, World()) == "spread"
    assert parallel_mode("auto", stored, DDP_MIN_IMAGES, pair) == "spread"  # its labels replay one-process batches
    with pytest.raises(DDKitError, match="soft-kd-stored replays soft labels .* parallel 'spread'"):
        parallel_mode("ddp", stored, 10, pair)
    with pytest.raises(DDKitError, match="unknown parallel mode 'fast'; choose one of: auto, spread, ddp"):
        parallel_mode("fast", hard, 10, pair)


def test_prisms_cross_entropy_is_on_each_images_own_label_under_cutmix():
    teacher = torch.nn.Linear(4, 3)
    x, labels = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    batch = Batch(x, torch.arange(5), 0, (torch.tensor([4, 3, 2, 1, 0]), 0.3))
    expected = 0.1 * torch.nn.functional.cross_entropy(teacher(x), labels)
    assert torch.isclose(mse_ce_loss(teacher, labels, 0.1)(teacher(x), batch), expected)


def test_imagenet_soft_prism_runs_with_a_per_batch_rescaled_ensemble_a_run_sets(tiny, tiny_teacher_loader, tmp_path):
    from ddkit.models.teachers import TeacherPool

    distilled = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    pool = TeacherPool(tiny)
    pool._loaded = {n: tiny_teacher_loader(n) for n in ("convnet-bn", "resnet", "mobilenet")}
    preset = load_eval_preset("imagenet-soft-prism", teacher="convnet-bn+resnet+mobilenet")
    preset = replace(preset, train=replace(preset.train, epochs=1), seeds=[0], student=ModelSpec("resnet-ap", {"width": 8}))
    (summary,) = evaluate_set(distilled, preset, tiny, tmp_path, None, pool)
    assert summary.preset == "imagenet-soft-prism@convnet-bn+resnet+mobilenet"
    assert summary.teacher.count("+") == 2 and summary.teacher.endswith("(per-batch rescale)") and 0 <= summary.mean <= 100


def test_imagenet_soft_runs_with_the_teacher_a_run_sets(tiny, tiny_teacher_loader, tmp_path):
    distilled = synthesize("random", {}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    preset = load_eval_preset("imagenet-soft", teacher="convnet-bn")
    preset = replace(preset, train=replace(preset.train, epochs=1, batch_size=8), seeds=[0],
                     student=ModelSpec("resnet-idc", {"width": 8}))
    (summary,) = evaluate_set(distilled, preset, tiny, tmp_path, None, tiny_teacher_loader)
    assert summary.preset == "imagenet-soft@convnet-bn" and summary.teacher.startswith("convnet-bn")
    assert (tmp_path / "imagenet-soft@convnet-bn").is_dir() and 0 <= summary.mean <= 100


def test_a_multi_formation_set_trains_students_on_its_decoded_tiles_and_scores_them_on_val_too(tiny, tiny_teacher_loader, tmp_path):
    distilled = synthesize("random", {"factor": 2}, SynthesisContext(tiny, 2, 0, tiny_teacher_loader))
    (summary,) = evaluate_set(distilled, quick("hard-dsa-quick", epochs=2, seeds=[0], quick=False), tiny, tmp_path)
    record = json.loads(next(tmp_path.glob("*/*/seed-0.json")).read_text())
    assert record["train_images"] == 80 and 0 <= record["val_accuracy"] <= 100
    assert summary.val_mean == round(record["val_accuracy"], 2)
    (quick_summary,) = evaluate_set(distilled, quick("hard-dsa-quick", epochs=2, seeds=[0]), tiny, tmp_path / "quick")
    assert quick_summary.val_mean is None  # quick presets choose nothing: no validation pass
