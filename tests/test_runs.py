import importlib.metadata

import pytest
import torch

from ddkit.errors import DDKitError
from ddkit.runs import RunDir, atomic_directory, atomic_write_text, environment, installed_version, read_json


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_directory(tmp_path / "set") as tmp:
            (tmp / "partial.bin").write_bytes(b"x")
            raise Boom
    assert not (tmp_path / "set").exists()
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_run_dir_records_environment_and_refuses_another_config(tmp_path):
    RunDir(tmp_path / "run", "run", {"a": 1, "b": {"c": 2}})
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["config"] == {"a": 1, "b": {"c": 2}} and manifest["environment"]["torch"]
    RunDir(tmp_path / "run", "run", {"a": 1, "b": {"c": 2}})  # same config: resumes
    with pytest.raises(DDKitError, match=r"different config \(differs at 'b.c'\); pass another --out"):
        RunDir(tmp_path / "run", "run", {"a": 1, "b": {"c": 3}})


def test_environment_records_the_optional_stacks_cuda_cudnn_and_the_device():
    recorded = environment()
    for package in ("diffusers", "timm", "transformers"):
        assert recorded[package] == importlib.metadata.version(package)
    assert recorded["cuda"] == torch.version.cuda and recorded["cudnn"] == torch.backends.cudnn.version()
    assert "device" not in recorded and environment(torch.device("cpu"))["device"] == "cpu"
    assert installed_version("ddkit-no-such-package") is None  # a missing extra is recorded as None
