"""Safe weight files: safetensors, or torch files loaded with weights_only=True. Never pickle."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from ddkit.errors import DDKitError
from ddkit.runs import atomic_write_tensors

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write_tensors(path, {k: v.detach().cpu() for k, v in model.state_dict().items()}, metadata)


def resolve_weight_file(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        for name in WEIGHT_FILES:
            if (path / name).exists():
                return path / name
        raise DDKitError(f"no weight file in {path}; expected one of: {', '.join(WEIGHT_FILES)}")
    if not path.exists():
        raise DDKitError(f"checkpoint {path} does not exist")
    return path


def load_state(path: Path) -> dict[str, torch.Tensor]:
    path = resolve_weight_file(path)
    fix = "re-create it, or pass a safetensors file or a weights-only torch file"
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise DDKitError(f"checkpoint {path} is corrupt ({err}); {fix}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:160]
        raise DDKitError(f"checkpoint {path} is corrupt or not a weights-only file ({reason}); {fix}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DDKitError(f"checkpoint {path} does not hold a state dict of tensors; {fix}")
    return state


def load_weights(model: nn.Module, path: Path) -> None:
    state = load_state(path)
    if hasattr(model, "body") and not any(k.startswith("body.") for k in state):
        model = model.body  # a bare network's weights (a timm/torchvision download) for our pixel-space wrapper
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise DDKitError(
            f"checkpoint {path} does not fit this model: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {unexpected[:2]}); check the architecture and its options"
        )
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise DDKitError(
            f"checkpoint {path} does not fit this model: {wrong[0]} has shape {tuple(state[wrong[0]].shape)}, "
            f"model expects {tuple(own[wrong[0]].shape)}; check the number of classes and options"
        )
    model.load_state_dict(state)
