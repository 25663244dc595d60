"""Checkpoints: a model's full ``state_dict`` (parameters and buffers) as safetensors, written atomically.

Every tensor's SHA-256 is stored in the file's metadata (``sha256:<name>``) and checked when the file is read,
so flipped bits in the tensor data are a :class:`~flatminima.errors.CheckpointError`, not weights of 4e37.
Files written before checksums existed (no such metadata) are read without the check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from .._io import atomic_path
from ..errors import CheckpointError

__all__ = [
    "load_checkpoint",
    "load_optimizer_state",
    "read_checkpoint",
    "save_checkpoint",
    "save_optimizer_state",
]

_SHA = "sha256:"


def _digest(tensor: Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def save_checkpoint(model: nn.Module | dict[str, Tensor], path: str | Path) -> Path:
    """Write ``model.state_dict()`` (or a state dict) to ``path`` via a temporary file and a rename.

    Tensors are copied (contiguous, unshared), so tied weights are stored once per name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, Tensor)}
    metadata = {f"{_SHA}{k}": _digest(v.reshape(-1)) for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors stored at ``path``, their checksums verified; :class:`CheckpointError` when missing,
    unreadable or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None
    for name, tensor in tensors.items():
        expected = metadata.get(f"{_SHA}{name}")
        if expected is not None and _digest(tensor.reshape(-1)) != expected:
            raise CheckpointError(
                f"checkpoint {path} is corrupt: tensor {name!r} does not match its checksum"
            )
    return tensors


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "int"


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strict: names, shapes and kinds of dtype must match;
    a float tensor may be converted to the model's float precision, an integer tensor never to float)."""
    state = read_checkpoint(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {extra[:5]}"
        )
    for key, value in state.items():
        if tuple(own[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"checkpoint {path} does not match the model: {key} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(own[key].shape)}"
            )
        if _kind(value.dtype) != _kind(own[key].dtype):
            raise CheckpointError(
                f"checkpoint {path} does not match the model: {key} is {value.dtype}, the model expects "
                f"{own[key].dtype}"
            )
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model


def save_optimizer_state(optimizer: torch.optim.Optimizer, path: str | Path) -> Path:
    """``torch.save(optimizer.state_dict())`` to ``path`` atomically (read back with
    :func:`load_optimizer_state`, i.e. ``torch.load(weights_only=True)``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(optimizer.state_dict(), tmp)
    return path


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """An optimizer ``state_dict`` saved by :func:`save_optimizer_state` (no code runs while loading)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"optimizer state {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise CheckpointError(f"optimizer state {path} is corrupt ({exc})") from None
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise CheckpointError(f"{path} is not an optimizer state_dict")
    return state
