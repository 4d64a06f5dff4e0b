import pytest
import torch

from ddkit.curves import read_rows
from ddkit.errors import DDKitError
from ddkit.models.teachers import (
    DEFAULT_PANEL,
    cache_entry,
    load_or_squeeze,
    teacher_config,
)

TINY = {"train": {"epochs": 1, "batch_size": 64}, "arch": {"options": {"width": 8}}}


def test_squeeze_caches_and_second_call_reuses(tiny, cache):
    config = teacher_config("convnet-bn", TINY)
    first = load_or_squeeze(config, tiny, cache)
    entry = cache_entry(config, tiny, cache)
    assert (entry / "model.safetensors").exists() and not (entry / "resume.pt").exists()
    assert [row["step"] for row in read_rows(entry / "curves" / "train.csv")] == [1]  # one epoch
    stamp = (entry / "model.safetensors").stat().st_mtime_ns
    second = load_or_squeeze(config, tiny, cache)
    assert (entry / "model.safetensors").stat().st_mtime_ns == stamp
    assert second.info["test_accuracy"] == first.info["test_accuracy"]
    x = tiny.test.images[:8]
    assert torch.equal(first.model(x), second.model(x))


def test_squeeze_reproduces_weights_bit_for_bit(tiny, tmp_path):
    config = teacher_config("convnet-bn", TINY)
    a = load_or_squeeze(config, tiny, tmp_path / "a").model.state_dict()
    b = load_or_squeeze(config, tiny, tmp_path / "b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_different_recipe_gets_a_different_cache_entry(tiny, cache):
    assert cache_entry(teacher_config("convnet-bn", TINY), tiny, cache) != cache_entry(
        teacher_config("convnet-bn", {**TINY, "seed": 1}), tiny, cache
    )


def test_default_panel_differs_in_kind_and_has_batchnorm(tiny):
    archs = {teacher_config(name).arch.name for name in DEFAULT_PANEL}
    assert archs == {"convnet-bn", "resnet", "mobilenet"}


def test_unknown_teacher_and_bad_recipe_key():
    with pytest.raises(DDKitError, match="unknown teacher .vit.; choose one of: convnet-bn"):
        teacher_config("vit")
    with pytest.raises(DDKitError, match="teacher resnet: unknown key 'train.epoch'; valid keys: augmentation"):
        teacher_config("resnet", {"train": {"epoch": 3}})
