from dataclasses import replace

import pytest

from ddkit.evaluate import load_eval_preset
from ddkit.presets import preset_names


@pytest.mark.parametrize("name", preset_names("eval"))
def test_every_shipped_preset_loads_and_quick_ones_say_so(name):
    preset = load_eval_preset(name)
    assert preset.quick == name.endswith("-quick")
    assert ("QUICK" in preset.description) == preset.quick
    assert len(preset.seeds) >= 3


def test_hard_dsa_is_the_dc_dsa_protocol():
    preset = load_eval_preset("hard-dsa")
    assert preset.student.name == "convnet" and preset.student.options == {"width": 128, "depth": 3, "norm": "instance"}
    t = preset.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule, t.epochs, t.batch_size, t.augmentation) == (
        "sgd", 0.01, 0.9, 5e-4, "step-half", 300, 256, "dsa")
    assert preset.labels == "hard" and preset.test_subset is None


def test_soft_kd_names_its_teacher():
    preset = load_eval_preset("soft-kd")
    assert preset.labels == "soft-online" and preset.teacher == "convnet-bn"
    assert preset.train.optimizer == "adamw" and preset.train.schedule == "cosine"


def test_soft_set_mirrors_soft_kd_without_a_teacher():
    soft_set, soft_kd = load_eval_preset("soft-set"), load_eval_preset("soft-kd")
    assert soft_set.labels == "soft-set" and soft_set.teacher is None and not soft_set.uses_teacher
    assert (soft_set.student, soft_set.train, soft_set.temperature) == (soft_kd.student, soft_kd.train, soft_kd.temperature)
    with pytest.raises(ValueError, match="soft-set learns from the set's own soft labels; remove the teacher"):
        replace(soft_set, teacher="convnet-bn")
