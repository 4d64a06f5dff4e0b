import importlib.metadata

import pytest
import torch

from ddkit.data.distilled import DISTILLED_SET
from ddkit.errors import DDKitError
from ddkit.runs import (
    OutputKind,
    RunDir,
    atomic_directory,
    atomic_write_text,
    check_output,
    check_writable,
    checksums,
    environment,
    installed_version,
    open_workdir,
    read_json,
    remove_workdir,
    verify_checksums,
)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "first")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_directory(tmp_path / "set", DISTILLED_SET) as tmp:
            (tmp / "partial.bin").write_bytes(b"x")
            raise Boom
    assert not (tmp_path / "set").exists()
    assert target.read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_run_dir_records_environment_and_refuses_another_config(tmp_path):
    RunDir(tmp_path / "run", {"a": 1, "b": {"c": 2}})
    manifest = read_json(tmp_path / "run" / "manifest.json")
    assert manifest["config"] == {"a": 1, "b": {"c": 2}} and manifest["environment"]["torch"]
    RunDir(tmp_path / "run", {"a": 1, "b": {"c": 2}})  # same config: resumes
    with pytest.raises(DDKitError, match=r"different config \(differs at 'b.c'\); pass another --out"):
        RunDir(tmp_path / "run", {"a": 1, "b": {"c": 3}})


def test_only_ddkit_outputs_are_replaced(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("years of work")
    with pytest.raises(DDKitError, match=r"mine already exists and is not a distilled set made by ddkit \(it holds 'thesis.tex'\)"):
        with atomic_directory(user, DISTILLED_SET) as tmp:
            (tmp / "manifest.json").write_text("{}")
    assert (user / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp folder left behind
    with pytest.raises(DDKitError, match="is a file, not a folder"):
        check_output(user / "thesis.tex", DISTILLED_SET)
    (tmp_path / "link").symlink_to(user)
    with pytest.raises(DDKitError, match="is a symbolic link"):
        check_output(tmp_path / "link", DISTILLED_SET)
    empty = tmp_path / "empty"
    empty.mkdir()
    check_output(empty, DISTILLED_SET)  # an empty folder may be filled


def test_a_ddkit_output_is_replaced_whole(tmp_path):
    kind = OutputKind("thing", lambda folder: (folder / "ours.json").is_file())
    for version in ("one", "two"):
        with atomic_directory(tmp_path / "out", kind) as tmp:
            (tmp / "ours.json").write_text(version)
    assert (tmp_path / "out" / "ours.json").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_work_folders_are_marked_and_only_marked_ones_are_removed(tmp_path):
    work = open_workdir(tmp_path / "x.partial", "a set")
    (work / "item.safetensors").write_bytes(b"1")
    remove_workdir(work)
    assert not work.exists()
    user = tmp_path / "y.partial"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    remove_workdir(user)
    assert (user / "notes.txt").exists()
    with pytest.raises(DDKitError, match="not a work folder made by ddkit"):
        open_workdir(user, "a set")


def test_checksums_name_the_file_that_changed(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"abc")
    expected = checksums(tmp_path, ["w.bin"])
    verify_checksums(tmp_path, expected)
    (tmp_path / "w.bin").write_bytes(b"abd")
    with pytest.raises(DDKitError, match=r"w.bin does not match its checksum"):
        verify_checksums(tmp_path, expected)


def test_an_unwritable_place_is_found_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(DDKitError, match="is a file, not a folder"):
        check_writable(tmp_path / "file" / "out")



def test_environment_records_the_optional_stacks_cuda_cudnn_and_the_device():
    recorded = environment()
    for package in ("diffusers", "timm", "transformers"):
        assert recorded[package] == importlib.metadata.version(package)
    assert recorded["cuda"] == torch.version.cuda and recorded["cudnn"] == torch.backends.cudnn.version()
    assert "device" not in recorded and environment(torch.device("cpu"))["device"] == "cpu"
    assert installed_version("ddkit-no-such-package") is None  # a missing extra is recorded as None
