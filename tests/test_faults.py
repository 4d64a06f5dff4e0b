"""The fault suite: the real CLI under bad input, full or read-only disks, damaged caches and
concurrent processes. Each case asserts the exit code, a one-line message naming the cause, and
that nothing of the user's was touched and nothing half-written was left."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

TINY_DATA = "--dataset.train_per_class=20"
QUICK_MLP = ["--train.epochs=1", TINY_DATA]


def one_line_error(text: str) -> str:
    """The error line; fails if the output holds a traceback or a second error line."""
    assert "Traceback" not in text and "╭" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    return errors[0]


def copied(tensors: dict) -> dict:
    """Tensors detached from their file (safetensors may map it, and the test overwrites it in place)."""
    return {name: tensor.clone() for name, tensor in tensors.items()}


def same_tensors(a: dict, b: dict) -> bool:
    """Equal tensors (a safetensors header's metadata order varies between writes, the data does not)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def user_folder(tmp_path):
    folder = tmp_path / "my-folder"
    (folder / "notes").mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work")
    (folder / "notes" / "ideas.md").write_text("keep me")
    return folder


# -- 1. Data loss: ddkit replaces only what it recognises as its own --------------------------

@pytest.mark.parametrize("command", [
    ["synthesize", "random", "--ipc", "1", "--out", "{user}"],
    ["run", "demo", "--out", "{user}"],
    ["evaluate", "{user}"],
    ["report", "{user}"],
])
def test_a_users_folder_is_never_emptied(user_folder, command, cli):
    before = snapshot(user_folder)
    code, text = cli(*[c.format(user=user_folder) for c in command])
    assert code == 2 and str(user_folder) in one_line_error(text)
    assert snapshot(user_folder) == before and sorted(p.name for p in user_folder.parent.iterdir()) == ["my-folder"]


def test_a_users_folder_where_the_work_folder_goes_is_refused(user_folder, cli):
    partial = user_folder.rename(user_folder.with_name("set.partial"))
    before = snapshot(partial)
    code, text = cli("synthesize", "random", "--ipc", "1", "--out", partial.with_name("set"))
    assert code == 2 and "set.partial already exists and is not a work folder made by ddkit" in one_line_error(text)
    assert snapshot(partial) == before


@pytest.mark.parametrize("command", [["squeeze", "mlp", *QUICK_MLP], ["squeeze-prior", "test-unet", "--check_teacher=mlp", TINY_DATA]])
def test_a_cache_inside_a_users_folder_adds_its_entries_and_touches_nothing_else(user_folder, command, cli):
    before = snapshot(user_folder)
    code, text = cli(*command, "--cache", user_folder)
    assert code == 0, text
    after = snapshot(user_folder)
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith(("teachers/", "priors/")) for k in set(after) - set(before))


def test_a_ddkit_set_of_the_same_config_is_reused_and_another_config_is_refused(tmp_path, cli):
    out = tmp_path / "set"
    assert cli("synthesize", "random", "--ipc", "1", "--out", out)[0] == 0
    made = snapshot(out)
    assert cli("synthesize", "random", "--ipc", "1", "--out", out)[0] == 0
    code, text = cli("synthesize", "random", "--ipc", "1", "--seed", "1", "--out", out)
    assert code == 2 and "holds a set made with another seed" in one_line_error(text)
    assert snapshot(out) == made


# -- 2. Errors a user should never see as tracebacks ------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["synthesize", "random", "--ipc", "1.5", "--out", "x"], "Invalid value for '--ipc'"),
    (["synthesize", "random", "--out", "x"], "Missing option '--ipc'; see 'ddkit synthesize --help'"),
    (["distil", "random"], "No such command 'distil'"),
    (["synthesize", "random", "--ipc", "1", "--out", "x", "--device", "meta"], "unknown device 'meta'"),
    (["synthesize", "random", "--ipc", "1", "--out", "x", "--device", "mps"], "unknown device 'mps'"),
    (["synthesize", "dap", "--ipc", "1", "--out", "x", "--sampler.steps=0"], "sampler: steps must be at least 1"),
    (["synthesize", "random", "--ipc", "1", "--out", "x", "--dataset.val_size=1e9"], "val_size"),
])
def test_usage_errors_are_one_line_with_exit_2(monkeypatch, tmp_path, args, message, cli):
    monkeypatch.chdir(tmp_path)
    code, text = cli(*args)
    assert code == 2 and message in one_line_error(text)
    assert not any(tmp_path.iterdir())


def test_out_naming_a_file_is_refused(tmp_path, cli):
    target = tmp_path / "report.pdf"
    target.write_bytes(b"%PDF")
    code, text = cli("synthesize", "random", "--ipc", "1", "--out", target)
    assert code == 2 and "report.pdf is a file, not a folder" in one_line_error(text)
    assert target.read_bytes() == b"%PDF"


def _cli(*args):
    # A test run started in the background (`nohup make test &`) ignores SIGINT, and its children
    # would inherit that: give the CLI the default disposition a terminal gives it.
    return subprocess.Popen([sys.executable, "-m", "ddkit", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_ctrl_c_exits_130_and_keeps_finished_work(tmp_path):
    out = tmp_path / "set"
    process = _cli("synthesize", "sre2l", "--ipc", "3", "--iterations=300", "--out", out, "--cache", tmp_path / "cache", TINY_DATA)
    partial = out.with_name("set.partial")
    deadline = time.time() + 300
    while not list(partial.glob("*.safetensors")):  # interrupt once a work item is finished
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "interrupted: finished work is kept; run the same command again to resume" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".set.*")) and list(partial.glob("*.safetensors"))


@pytest.fixture()
def mount_tmpfs(tmp_path):
    """mount_tmpfs(name, kib, read_only=False) -> a fresh tmpfs of that size (needs root, as in CI)."""
    mounted = []

    def mount(name: str, kib: int, read_only: bool = False) -> Path:
        point = tmp_path / name
        point.mkdir()
        options = f"size={kib}k" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()}); this case needs root")
        mounted.append(point)
        return point

    yield mount
    for point in reversed(mounted):
        subprocess.run(["umount", str(point)], check=True)


def test_a_full_disk_while_writing_a_set_is_one_line_and_leaves_no_half_written_set(mount_tmpfs, cli):
    disk = mount_tmpfs("small", 128)
    code, text = cli("synthesize", "random", "--ipc", "20", "--out", disk / "set")
    assert code == 2 and "No space left on device" in one_line_error(text)
    assert not (disk / "set").exists() and not list(disk.glob(".set.*"))  # no set, no temp folders


def test_read_only_outputs_fail_before_any_work(mount_tmpfs, tmp_path, cli):
    disk = mount_tmpfs("ro", 1024, read_only=True)
    for args in (["synthesize", "random", "--ipc", "1", "--out", disk / "set"],
                 ["run", "demo", "--out", disk / "run"],
                 ["squeeze", "mlp", *QUICK_MLP, "--cache", disk / "cache"]):
        code, text = cli(*args)
        assert code == 2 and "Read-only file system" in one_line_error(text), args


def test_evaluate_finds_a_full_or_read_only_set_folder_before_training(mount_tmpfs, cli):
    disk = mount_tmpfs("set-disk", 512)
    assert cli("synthesize", "random", "--ipc", "1", "--out", disk / "set")[0] == 0
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last page
        while True:
            os.write(fd, bytes(4096))
    except OSError:
        pass
    finally:
        os.close(fd)
    started = time.perf_counter()
    code, text = cli("evaluate", disk / "set", "--preset", "hard-dsa-quick")
    assert code == 2 and "No space left on device" in one_line_error(text)
    assert time.perf_counter() - started < 30 and not (disk / "set" / "eval").exists()
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    code, text = cli("evaluate", disk / "set")
    assert code == 2 and "Read-only file system" in one_line_error(text)


def test_unreadable_work_items_are_made_again(monkeypatch, tmp_path, caplog, cli):
    from ddkit.data import DistilledSet

    args = ["synthesize", "sre2l", "--ipc", "2", "--iterations=3", "--cache", tmp_path / "cache", TINY_DATA]
    assert cli(*args, "--out", tmp_path / "clean")[0] == 0
    # An interrupted run whose work folder a crash (a truncated item) and a stray file (a foreign one) damaged:
    def interrupted(self, path, folders=None):
        raise KeyboardInterrupt
    with monkeypatch.context() as patch:
        patch.setattr(DistilledSet, "save", interrupted)
        assert cli(*args, "--out", tmp_path / "resumed")[0] == 130
    items = sorted((tmp_path / "resumed.partial").glob("*.safetensors"))
    assert len(items) >= 2
    items[0].write_bytes(items[0].read_bytes()[:100])
    items[1].write_bytes(b"not a tensor file")
    code, text = cli(*args, "--out", tmp_path / "resumed")
    assert code == 0, text
    assert caplog.text.count("is unreadable") == 2 and items[0].name in caplog.text
    assert (DistilledSet.load(tmp_path / "resumed").images == DistilledSet.load(tmp_path / "clean").images).all()


# -- 3. Integrity of what is cached --------------------------------------------------------------

def test_a_damaged_cached_teacher_is_reported_and_squeezed_again(tmp_path, caplog, cli):
    cache = tmp_path / "cache"
    assert cli("squeeze", "mlp", *QUICK_MLP, "--cache", cache)[0] == 0
    weights = next(cache.glob("teachers/*/mlp-*/model.safetensors"))
    good, trained = weights.read_bytes(), copied(load_file(weights))
    damaged = bytearray(good)
    damaged[-600:-200] = bytes(400)  # 400 overwritten bytes inside the tensors: the file still parses
    weights.write_bytes(bytes(damaged))
    code, text = cli("squeeze", "mlp", *QUICK_MLP, "--cache", cache)
    assert code == 0, text
    assert caplog.text.count("is damaged") == 1 and "does not match its checksum" in caplog.text
    assert same_tensors(load_file(weights), trained)  # squeezed again, bit-identical on the CPU
    caplog.clear()
    assert cli("squeeze", "mlp", *QUICK_MLP, "--cache", cache)[0] == 0
    assert "is damaged" not in caplog.text
    weights.write_bytes(good[:50])  # truncated: fails to load at all
    assert cli("squeeze", "mlp", *QUICK_MLP, "--cache", cache)[0] == 0
    assert same_tensors(load_file(weights), trained)


def test_a_damaged_cached_prior_is_reported_and_trained_again(tmp_path, caplog, cli):
    cache = tmp_path / "cache"
    args = ["squeeze-prior", "test-unet", "--check_teacher=mlp", TINY_DATA, "--cache", cache]
    assert cli(*args)[0] == 0
    weights = next(cache.glob("priors/*/test-unet-*/unet/diffusion_pytorch_model.safetensors"))
    good, trained = weights.read_bytes(), copied(load_file(weights))
    weights.write_bytes(good[:-400] + bytes(400))
    assert cli(*args)[0] == 0
    assert caplog.text.count("training it again") == 1 and "does not match its checksum" in caplog.text
    assert same_tensors(load_file(weights), trained)


# -- two processes at once -------------------------------------------------------------------

def _pause_once_it_holds(locks: str, root: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    """SIGSTOP `process` once its holder note is in a lock file matching `locks` under `root`.

    A paused holder keeps its flock, so a second process started now must find the lock taken
    however slowly it starts up: the race a 2-core CI machine used to lose is gone.
    """
    deadline = time.time() + seconds
    while not any(_holder_pid(lock) == process.pid for lock in root.glob(locks)):
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGSTOP)


def _holder_pid(lock: Path):
    try:
        return json.loads(lock.read_text())["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not written yet, or already removed


def _wait_until_it_waits(process: subprocess.Popen, holder: subprocess.Popen) -> str:
    """Read `process`'s stderr up to its "waiting" line, then let the paused `holder` go on."""
    seen = []
    try:
        while not seen or "waiting for it to finish" not in seen[-1]:
            line = process.stderr.readline()
            assert line, "".join(seen) + "the second process ended without waiting for the first"
            seen.append(line)
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    return "".join(seen)


def test_two_processes_squeezing_one_teacher_train_it_once(tmp_path):
    cache = tmp_path / "cache"
    args = ["squeeze", "mlp", "--train.epochs=30", TINY_DATA, "--cache", cache]
    first = _cli(*args)
    _pause_once_it_holds("teachers/*/mlp-*.lock", cache, first)
    second = _cli(*args)
    waited = _wait_until_it_waits(second, holder=first)
    out_first, err_first = first.communicate(timeout=600)
    finished = time.time()
    out_second, err_second = second.communicate(timeout=600)
    err_second = waited + err_second
    assert first.returncode == 0 and second.returncode == 0, err_first + err_second
    assert "waiting for it to finish" in err_second and "waiting" not in err_first
    weights = next(cache.glob("teachers/*/mlp-*/model.safetensors"))
    assert weights.stat().st_mtime <= finished  # the second process did not write it again
    assert out_first.splitlines()[-2:] == out_second.splitlines()[-2:]  # the same teacher, the same numbers


def test_two_processes_writing_one_set_make_it_once(tmp_path):
    out = tmp_path / "set"
    args = ["synthesize", "herding", "--ipc", "2", "--out", out, "--cache", tmp_path / "cache", TINY_DATA]
    first = _cli(*args)
    _pause_once_it_holds("set.lock", tmp_path, first)
    second = _cli(*args)
    _wait_until_it_waits(second, holder=first)
    assert first.wait(timeout=600) == 0
    made = snapshot(out)
    second.communicate(timeout=600)
    assert second.returncode == 0
    assert snapshot(out) == made


# -- bad data and damaged sets, through the CLI ------------------------------------------------

def _arrays(path: Path, **changes) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (60, 8, 8), dtype=np.uint8), "y_train": np.arange(60) % 3,
              "x_test": rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), "y_test": np.arange(30) % 3}
    np.savez(path, **(arrays | changes))
    return path


def _arrays_cases():
    import numpy as np

    nan = np.full((60, 8, 8), np.nan, dtype=np.float32)
    return [
        ({"x_train": nan}, "NaN or infinite"),
        ({"y_train": np.arange(59) % 3}, "y_train has 59 labels; they must pair up"),
        ({"y_train": np.arange(60) % 3 - 1}, "negative"),
        ({"y_train": (np.arange(60) % 3) + 0.5}, "non-integer labels"),
        ({"x_test": np.zeros((30, 9, 9), dtype=np.uint8)}, "8×8"),
        ({"class_names": np.array(["a", "b"])}, "class_names"),
    ]


@pytest.mark.parametrize("changes, cause", _arrays_cases())
def test_bad_arrays_are_one_line_through_the_cli(tmp_path, changes, cause, cli):
    source = _arrays(tmp_path / "data.npz", **changes)
    code, text = cli("synthesize", "random", "--ipc", "1", "--out", tmp_path / "set",
                       "--dataset", "arrays", "--data-root", source, "--dataset.val_size=3")
    assert code == 2 and cause in one_line_error(text) and not (tmp_path / "set").exists()


def test_an_empty_class_is_named_as_the_reason_no_ipc_fits(tmp_path, cli):
    import numpy as np

    labels = np.arange(60) % 2  # class 2 of ["a", "b", "c"] has no image
    source = _arrays(tmp_path / "data.npz", y_train=labels, y_test=np.arange(30) % 3, class_names=np.array(["a", "b", "c"]))
    code, text = cli("synthesize", "random", "--ipc", "1", "--out", tmp_path / "set",
                       "--dataset", "arrays", "--data-root", source, "--dataset.val_size=3")
    assert code == 2 and "'c'" in one_line_error(text) and "from 1 to 0" not in text


def test_a_corrupt_fashion_mnist_gzip_is_one_line_through_the_cli(tmp_path, cli):
    import shutil

    from ddkit.data.fashion_mnist import DEFAULT_ROOT

    root = tmp_path / "fmnist"
    shutil.copytree(DEFAULT_ROOT, root)
    damaged = bytearray((root / "t10k-labels-idx1-ubyte.gz").read_bytes())
    damaged[10] = 0xFF  # the first deflate block header: a reserved block type
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(bytes(damaged))
    code, text = cli("synthesize", "random", "--ipc", "1", "--out", tmp_path / "set", "--data-root", root)
    assert code == 2 and "t10k-labels-idx1-ubyte.gz is corrupt" in one_line_error(text)


@pytest.mark.parametrize("damage, cause", [
    ("manifest-list", "is not a set manifest (a JSON object)"),
    ("labels-out-of-range", "is outside the set's 10 classes"),
    ("tensors-changed", "does not match its checksum"),
])
def test_a_damaged_set_is_one_line_through_evaluate(tmp_path, damage, cause, cli):
    from safetensors.torch import load_file, save_file

    from ddkit.runs import sha256_file

    out = tmp_path / "set"
    assert cli("synthesize", "random", "--ipc", "1", "--out", out)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    tensors = out / "tensors.safetensors"
    if damage == "manifest-list":
        (out / "manifest.json").write_text(json.dumps([manifest]))
    else:
        content = load_file(str(tensors))
        content["labels"] = content["labels"] + (10 if damage == "labels-out-of-range" else 0)
        content["images"] = content["images"] * (1 if damage == "labels-out-of-range" else 0.5)
        save_file(content, str(tensors))
        if damage == "labels-out-of-range":  # a tool rewrote the tensors and their checksum
            manifest["checksums"]["tensors.safetensors"] = sha256_file(tensors)
            (out / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(out)
    code, text = cli("evaluate", out)
    assert code == 2 and cause in one_line_error(text) and snapshot(out) == before


def test_every_preset_must_fit_the_set_before_a_student_trains(cli, tmp_path):
    out = tmp_path / "set"
    cli.ok("synthesize", "random", "--ipc", "1", "--out", out)
    code, text = cli("evaluate", out, "--preset", "hard-dsa-quick", "--preset", "soft-set-quick")
    assert code == 2 and "learns from the set's own soft labels, but this set has none" in one_line_error(text)
    assert not (out / "eval").exists()
