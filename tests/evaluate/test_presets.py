from dataclasses import replace

import pytest

from ddkit.errors import DDKitError
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


def test_hard_dsa_1000_is_hard_dsa_at_the_dsa_reference_length():
    short, long = load_eval_preset("hard-dsa"), load_eval_preset("hard-dsa-1000")
    assert long.train == replace(short.train, epochs=1000)
    assert (long.student, long.labels, long.seeds, long.test_subset) == (short.student, short.labels, short.seeds, short.test_subset)
    assert long.fingerprint != short.fingerprint


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


def test_imagenet_hard_is_idcs_recipe_with_its_epoch_table_per_class_count():
    preset = load_eval_preset("imagenet-hard")
    assert preset.student.options == {"width": 128, "depth": 6, "norm": "instance"} and preset.labels == "hard"
    t = preset.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule, t.batch_size, t.augmentation, t.mix, t.mix_prob) == (
        "sgd", 0.01, 0.9, 5e-4, "multistep", 64, "idc", "cutmix", 1.0)
    assert [t.epochs_for(ipc * 10, 10) for ipc in (1, 10, 50, 100, 1000)] == [3000, 2000, 1500, 1000, 300]
    hundred = load_eval_preset("imagenet-hard-100").train
    assert [hundred.epochs_for(ipc * 100, 100) for ipc in (1, 10, 50, 100, 1000)] == [2000, 1300, 1000, 600, 200]
    full = load_eval_preset("imagenet-hard-1k").train
    assert (full.lr, full.weight_decay, full.batch_size) == (0.1, 1e-4, 128)
    assert [full.epochs_for(ipc * 1000, 1000) for ipc in (1, 10, 50)] == [3000, 2000, 1500]


def test_imagenet_soft_presets_follow_sre2l_and_prisms_scripts():
    sre2l, prism = load_eval_preset("imagenet-soft"), load_eval_preset("imagenet-soft-prism")
    assert sre2l.student.name == prism.student.name == "torchvision:resnet18"
    assert (sre2l.teacher, sre2l.temperature, sre2l.loss, sre2l.train.batch_size, sre2l.train.augmentation) == (
        "tv-resnet18", 20.0, "kl", 1024, "rrc-flip-wide")
    assert prism.teacher == "tv-resnet18+tv-mobilenet-v2+tv-alexnet+tv-shufflenet-v2-x0-5"
    assert (prism.loss, prism.ce_weight, prism.ensemble_rescale, prism.train.batch_size, prism.train.augmentation) == (
        "mse-ce", 0.1, "per-batch", 50, "rrc-flip")
    for preset in (sre2l, prism):
        t = preset.train
        assert (t.optimizer, t.lr, t.weight_decay, t.schedule, t.epochs, t.mix) == ("adamw", 0.001, 0.01, "cosine", 300, "cutmix")


def test_a_run_sets_the_teacher_which_names_and_fingerprints_the_preset():
    shipped = load_eval_preset("imagenet-soft")
    ours = load_eval_preset("imagenet-soft", teacher="convnet-bn+resnet")
    assert ours.name == "imagenet-soft@convnet-bn+resnet" and ours.teacher == "convnet-bn+resnet"
    assert ours.fingerprint != shipped.fingerprint
    assert load_eval_preset("imagenet-soft", teacher="tv-resnet18") == shipped
    assert load_eval_preset("imagenet-hard", teacher="convnet-bn") == load_eval_preset("imagenet-hard")  # no teacher to set


def test_a_preset_loads_from_a_yaml_file(tmp_path):
    path = tmp_path / "my-protocol.yaml"
    path.write_text("description: mine\nstudent: {name: mlp}\ntrain: {epochs: 2, augmentation: none}\nseeds: [0, 1, 2]\n")
    preset = load_eval_preset(str(path))
    assert preset.name == "my-protocol" and preset.train.epochs == 2 and preset.student.name == "mlp"
    with pytest.raises(DDKitError, match="evaluation preset file .*missing.yaml does not exist"):
        load_eval_preset(str(tmp_path / "missing.yaml"))
    path.write_text("description: mine\nstudent: {name: mlp}\ntrain: {epochs: 2, mix_prob: 3}\n")
    with pytest.raises(DDKitError, match="evaluation preset .*my-protocol.yaml: .*mix_prob must lie in"):
        load_eval_preset(str(path))


def test_hard_idc_is_idcs_small_image_protocol():
    preset, dsa = load_eval_preset("hard-idc"), load_eval_preset("hard-dsa")
    assert preset.student == dsa.student and preset.labels == "hard"
    t = preset.train
    assert (t.optimizer, t.lr, t.momentum, t.weight_decay, t.schedule, t.epochs, t.batch_size, t.augmentation, t.mix, t.mix_prob) == (
        "sgd", 0.01, 0.9, 5e-4, "multistep", 1000, 64, "diffaug-idc", "cutmix", 0.5)
    assert t.epochs_for(400, 10) == 1000  # a factor-2 set of IPC 10 trains as long as any other
