"""Choosing the compute device. Data and models live on the CPU until a stage moves them.

Results are bit-identical across runs on the CPU; on a GPU they are repeatable only up to the
non-determinism of its kernels, so every result file records the device it was computed on.
"""

from __future__ import annotations

import torch

from ddkit.errors import DDKitError


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks the first GPU when there is one, else the CPU; 'cpu', 'cuda', 'cuda:1' as named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise DDKitError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:<index>")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DDKitError(f"device {name!r} asked for, but torch sees no GPU; use --device cpu")
    return device


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return str(device)
