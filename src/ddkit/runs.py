"""Run directories: manifests, atomic writes, finished-stage markers and resume.

Every file ddkit writes goes through a temp file (or temp directory) and `os.replace`, so an
interrupted run never leaves a half-written output behind; a stage counts as finished only when
its output exists, so re-running skips finished work and resumes the rest.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ddkit import __version__
from ddkit.errors import DDKitError

MANIFEST = "manifest.json"
# Recorded in every manifest beside torch: the packages whose version can change a result.
OPTIONAL_PACKAGES = ("diffusers", "timm", "transformers")


def default_cache_dir() -> Path:
    """Where teachers, priors and image-folder indexes are cached: $DDKIT_CACHE or ~/.cache/ddkit."""
    return Path(os.environ.get("DDKIT_CACHE", Path.home() / ".cache" / "ddkit"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, payload: Any) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_tensors(path: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> None:
    """Tensors (+ string metadata) as a safetensors file, written atomically."""
    from safetensors.torch import save

    atomic_write_bytes(Path(path), save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def read_tensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, in one open."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise DDKitError(f"{path} is not valid JSON ({err.msg}); delete it and re-run") from None


@dataclass(frozen=True)
class OutputKind:
    """A kind of folder ddkit writes, and how it recognises one of its own again.

    ddkit replaces or removes a folder only when `recognise` says it wrote it (or it is empty):
    an `--out` that names the user's own folder is refused, never emptied.
    """

    name: str
    recognise: Callable[[Path], bool]


def check_output(path: Path, kind: OutputKind) -> None:
    """Refuse `path` as the place of a `kind` unless it is free, an empty folder or ddkit's own
    `kind`, and unless it can be written; called before any work, so a wrong --out costs nothing."""
    path = Path(path)
    if path.is_symlink():
        raise DDKitError(f"{path} is a symbolic link; pass the folder it points to, or another path")
    if path.exists():
        if not path.is_dir():
            raise DDKitError(f"{path} is a file, not a folder for a {kind.name}; pass another path")
        if not kind.recognise(path):
            found = sorted(p.name for p in path.iterdir())
            if found:
                raise DDKitError(
                    f"{path} already exists and is not a {kind.name} made by ddkit (it holds {found[0]!r}"
                    f"{f' and {len(found) - 1} more' if len(found) > 1 else ''}); ddkit replaces only its own "
                    "outputs: pass another path or move that folder away"
                )
    check_writable(path)


def check_writable(path: Path) -> None:
    """Fail now, with the reason, if nothing can be written at `path` (read-only, full, a file on the way)."""
    folder = Path(path)
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise DDKitError(f"cannot write {path}: {folder} is a file, not a folder; pass another path")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".ddkit-probe.")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise DDKitError(f"cannot write in {folder} ({err.strerror}); free space there or pass another path") from None


def manifest_field(folder: Path, key: str) -> Any:
    """`key` of the JSON object in `folder`/manifest.json; None when there is no such readable object."""
    try:
        manifest = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest.get(key) if isinstance(manifest, dict) else None


@contextmanager
def atomic_directory(path: Path, kind: OutputKind) -> Iterator[Path]:
    """Yield a temp directory that replaces `path` only if the block finishes.

    An existing `path` is replaced only if it is ddkit's own `kind` (or empty); it is moved aside
    before the new one moves in, so some complete version is at `path` at every moment but one rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists() or path.is_symlink():
            check_output(path, kind)
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


WORK_MARKER = "ddkit-work.json"
WORKDIR = OutputKind("work folder", lambda path: (path / WORK_MARKER).is_file())


def open_workdir(path: Path, purpose: str) -> Path:
    """The folder where finished work items of `purpose` are kept until the output is complete."""
    path = Path(path)
    check_output(path, WORKDIR)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / WORK_MARKER).is_file():
        atomic_write_json(path / WORK_MARKER, {"purpose": purpose, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    return path


def remove_workdir(path: Path) -> None:
    """Remove a work folder once its output is complete; only one that ddkit marked as its own."""
    path = Path(path)
    if path.is_dir() and WORKDIR.recognise(path):
        shutil.rmtree(path, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksums(folder: Path, names: list[str]) -> dict[str, str]:
    return {name: sha256_file(Path(folder) / name) for name in names}


def verify_checksums(folder: Path, expected: dict[str, str]) -> None:
    """Raise, naming the first file, unless every file of `expected` is in `folder` with its sha256."""
    for name, digest in sorted(expected.items()):
        path = Path(folder) / name
        if not path.is_file():
            raise DDKitError(f"{path} is missing")
        if sha256_file(path) != digest:
            raise DDKitError(f"{path} does not match its checksum")


def config_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def git_revision() -> str | None:
    source = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        )
        dirty = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", "."],
            capture_output=True, text=True, timeout=5, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(device: Any = None) -> dict[str, Any]:
    """Versions and platform for a manifest; with the torch `device` a stage ran on, its name (the GPU's)."""
    import numpy
    import torch
    import torchvision

    from ddkit import distributed
    from ddkit.devices import device_label

    return {
        "ddkit": __version__,
        "git": git_revision(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        **{name: installed_version(name) for name in OPTIONAL_PACKAGES},
        "cuda": torch.version.cuda,  # None on CPU-only builds of torch
        "cudnn": torch.backends.cudnn.version(),  # None where torch has no cuDNN
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),  # per process: CPU results depend on it
        "world_size": distributed.current().size,  # torchrun processes that shared the work
        **({"device": device_label(device)} if device is not None else {}),
    }


def installed_version(distribution: str) -> str | None:
    """The installed version of a package, None when it is not installed (read without importing it)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


RUN_DIR = OutputKind("run directory", lambda folder: manifest_field(folder, "kind") == "run")


class RunDir:
    """A `ddkit run` directory owned by one resolved config; its manifest records how it was made."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.config = config
        check_output(self.path, RUN_DIR)
        manifest = self.path / MANIFEST
        if manifest.exists():
            previous = read_json(manifest)
            if previous.get("config_hash") != config_hash(config):
                key = _first_difference(previous.get("config", {}), config)
                raise DDKitError(
                    f"{self.path} holds a run of a different config"
                    f"{f' (differs at {key!r})' if key else ''}; pass another --out or delete it"
                )
        else:
            atomic_write_json(
                manifest,
                {
                    "kind": "run",
                    "config": config,
                    "config_hash": config_hash(config),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "environment": environment(),
                },
            )

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def _first_difference(old: Any, new: Any, where: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(old.get(key), new.get(key), f"{where}.{key}" if where else key)
            if found:
                return found
        return None
    return None if old == new else (where or "config")
