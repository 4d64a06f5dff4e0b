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
from pathlib import Path
from typing import Any, Iterator

from ddkit import __version__
from ddkit.errors import DDKitError

MANIFEST = "manifest.json"
# Recorded in every manifest beside torch: the packages whose version can change a result.
OPTIONAL_PACKAGES = ("diffusers", "timm", "transformers")


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


@contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temp directory that replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        "threads": torch.get_num_threads(),
        **({"device": device_label(device)} if device is not None else {}),
    }


def installed_version(distribution: str) -> str | None:
    """The installed version of a package, None when it is not installed (read without importing it)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


class RunDir:
    """A directory owned by one resolved config; its manifest records how it was made."""

    def __init__(self, path: Path, kind: str, config: dict[str, Any]) -> None:
        self.path = Path(path)
        self.kind = kind
        self.config = config
        manifest = self.path / MANIFEST
        if manifest.exists():
            previous = read_json(manifest)
            if previous.get("kind") != kind or previous.get("config_hash") != config_hash(config):
                key = _first_difference(previous.get("config", {}), config)
                raise DDKitError(
                    f"{self.path} holds a {previous.get('kind', 'different')} run of a different config"
                    f"{f' (differs at {key!r})' if key else ''}; pass another --out or delete it"
                )
        else:
            atomic_write_json(
                manifest,
                {
                    "kind": kind,
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
