"""Validation of what an Objective is built from: the model (wrappers, device, frozen or meta parameters), the
data (type, finiteness) and the first forward pass (input and target shapes, class labels).

Every failure is a :class:`~flatminima.errors.ConfigError` with one sentence saying what is wrong and what to
do, raised when the Objective is built, not from inside a product. Decisions:

* ``nn.DataParallel`` / ``DistributedDataParallel`` (``.module``) and ``torch.compile`` models
  (``._orig_mod``) are unwrapped, with a one-time note; parameter names (``params=``) are those of the inner
  module (no ``module.`` prefix).
* numpy arrays are accepted (converted with ``torch.as_tensor``); Python lists and other types are refused.
  Integer inputs are kept as they are (token ids for an embedding); a model that needs floating inputs gets
  an error naming the conversion.
* Loaders: the first batch is checked (finiteness, shapes, labels); later batches are not read in advance.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = [
    "as_data_tensor",
    "check_chunk_size",
    "check_finite_data",
    "check_targets",
    "describe_call_error",
    "resolve_device",
    "unwrap_model",
]

_NOTED: set[str] = set()
_INTS = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def unwrap_model(model: Any) -> nn.Module:
    """The module inside DataParallel / DDP / torch.compile wrappers (see the module docstring)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            kind, inner = type(model).__name__, model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            kind, inner = "torch.compile", model._orig_mod
        else:
            return model
        if kind not in _NOTED:
            _NOTED.add(kind)
            warnings.warn(
                f"flatminima: measuring the module inside the {kind} wrapper (its parameters keep their "
                "inner names, without a 'module.' prefix); shown once per process",
                UserWarning,
                stacklevel=4,
            )
        model = inner


def resolve_device(device: Any) -> torch.device | None:
    """``device=`` as a torch.device, refusing devices this machine does not have."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device={device!r} is not a device torch knows ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} requested, but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device={device!r} requested, but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device={device!r} requested, but MPS is not available on this machine")
    if dev.type == "meta":
        raise ConfigError("device='meta' holds no values: measurements need a real device ('cpu', 'cuda')")
    return dev


def check_model_tensors(model: nn.Module) -> None:
    """Refuse models whose parameters are meta tensors (not materialized)."""
    meta = [k for k, p in list(model.named_parameters()) + list(model.named_buffers()) if p.is_meta]
    if meta:
        raise ConfigError(
            f"the model's tensors are on the meta device (not materialized: {', '.join(meta[:3])}"
            f"{', ...' if len(meta) > 3 else ''}); load real weights first, e.g. "
            "model.to_empty(device='cpu') followed by load_state_dict"
        )


def check_chunk_size(chunk_size: Any) -> None:
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, Integral) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer (or None), got {chunk_size!r}")


def as_data_tensor(t: Any, name: str) -> Tensor:
    """A data argument as a tensor: tensors as they are, numpy arrays converted, anything else refused."""
    if isinstance(t, Tensor):
        if t.is_meta:
            raise ConfigError(f"{name} is a meta tensor (no values): pass real data")
        return t
    if hasattr(t, "__array__") and hasattr(t, "dtype") and hasattr(t, "shape"):
        try:
            return torch.as_tensor(t)
        except (TypeError, RuntimeError) as err:
            raise ConfigError(
                f"{name}: cannot convert the {type(t).__name__} of dtype {t.dtype} ({err})"
            ) from None
    raise ConfigError(
        f"{name} must be a torch.Tensor or a numpy array, got {type(t).__name__}; for batches of another "
        "form pass data=<loader>"
    )


def check_finite_data(t: Any, name: str) -> None:
    if isinstance(t, Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ConfigError(f"{name} contains {bad} NaN or inf value(s): clean the data before measuring")


def _first_layer(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if next(module.parameters(recurse=False), None) is not None:
            return module
    return None


def _expected_input(model: nn.Module) -> str:
    layer = _first_layer(model)
    if isinstance(layer, nn.Linear):
        return f"[..., {layer.in_features}] floating inputs (first layer {layer})"
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        dims = {nn.Conv1d: "L", nn.Conv2d: "H, W", nn.Conv3d: "D, H, W"}[type(layer)]
        return f"[n, {layer.in_channels}, {dims}] floating inputs (first layer {layer})"
    if isinstance(layer, nn.Embedding):
        return f"integer ids in [0, {layer.num_embeddings}) (first layer {layer})"
    return f"the inputs its first layer {layer} takes" if layer is not None else "its inputs"


def _describe(inputs: Any) -> str:
    if isinstance(inputs, Tensor):
        return f"shape {tuple(inputs.shape)} ({inputs.dtype})"
    if isinstance(inputs, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in inputs.items()) + "}"
    return type(inputs).__name__


def describe_call_error(model: nn.Module, inputs: Any, err: BaseException) -> ConfigError:
    """A ConfigError for a failed first forward pass: what was passed vs what the model expects."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    hint = ""
    if isinstance(inputs, Tensor) and not inputs.is_floating_point():
        layer = _first_layer(model)
        if not isinstance(layer, nn.Embedding):
            hint = " (integer inputs: convert them, e.g. x.float(), unless they are token ids)"
    return ConfigError(
        f"the model cannot be called on the data: one example has inputs of {_describe(inputs)}, the model "
        f"expects {_expected_input(model)}{hint}. torch said: {first}"
    )


def _shape(dims: tuple[int, ...]) -> str:
    return "[n" + "".join(f", {d}" for d in dims) + "]"


def check_targets(loss_name: str, outputs: Tensor, targets: Any, all_targets: Any = None) -> None:
    """Shapes of targets against outputs for the built-in losses, and class labels in range.

    ``outputs`` and ``targets`` are a chunk's; ``all_targets`` (tensor form) is checked for the label range.
    """
    if not isinstance(targets, Tensor) or loss_name not in ("mse", "cross_entropy", "token_cross_entropy"):
        return
    if loss_name == "token_cross_entropy" and (outputs.dim() != 3 or targets.dim() != 2):
        return  # the loss itself names the shapes it needs
    out, t = tuple(outputs.shape[1:]), tuple(targets.shape[1:])
    if loss_name == "mse" and out != t:
        raise ConfigError(
            f"mse: targets of shape {_shape(t)} do not match the outputs {_shape(out)} (the mean squared "
            "error needs one target per output)"
        )
    labels = targets.dtype in _INTS
    if loss_name == "cross_entropy":
        want = out[1:] if labels else out
        if t != want:
            kind = "class indices" if labels else "probability rows"
            raise ConfigError(
                f"cross_entropy: targets ({kind}) of shape {_shape(t)} do not match outputs {_shape(out)}: "
                f"expected {_shape(want)}"
            )
    if loss_name == "token_cross_entropy" or (loss_name == "cross_entropy" and labels):
        classes = outputs.shape[-1] if loss_name == "token_cross_entropy" else outputs.shape[1]
        check = all_targets if isinstance(all_targets, Tensor) else targets
        valid = check[check != -100]
        if len(valid) and (int(valid.min()) < 0 or int(valid.max()) >= classes):
            raise ConfigError(
                f"{loss_name}: class labels must lie in [0, {classes}) (or be -100, ignored); found labels "
                f"in [{int(valid.min())}, {int(valid.max())}] for a model with {classes} outputs per position"
            )
