"""Checkpoints: a model's full ``state_dict`` (parameters and buffers) as safetensors, written atomically."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .._io import atomic_path
from ..errors import CheckpointError

__all__ = ["load_checkpoint", "read_checkpoint", "save_checkpoint"]


def save_checkpoint(model: nn.Module | dict[str, Tensor], path: str | Path) -> Path:
    """Write ``model.state_dict()`` (or a state dict) to ``path`` via a temporary file and a rename.

    Tensors are copied (contiguous, unshared), so tied weights are stored once per name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = model.state_dict() if isinstance(model, nn.Module) else model
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if isinstance(v, Tensor)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    return path


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The tensors stored at ``path``; :class:`CheckpointError` when missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or not a safetensors file ({exc})") from None


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the checkpoint at ``path`` into ``model`` (strict: names and shapes must match exactly)."""
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
    with torch.no_grad():
        model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
    return model
