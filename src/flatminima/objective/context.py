"""The state a model is evaluated in inside an Objective's products, set on entry and restored on exit.

* Train / eval: every module is in eval mode (dropout off, running BatchNorm statistics), except, with
  ``bn="train"``, the BatchNorm layers (batch statistics of each chunk). Dropout is never switched on by
  ``bn="train"``: a measurement is a deterministic function of the weights.
* Attention: scaled-dot-product attention (``F.scaled_dot_product_attention``, used by
  ``nn.MultiheadAttention``, ``nn.TransformerEncoder`` and HuggingFace models) runs on torch's math backend,
  and the fused "fast path" of ``nn.MultiheadAttention`` / ``nn.TransformerEncoderLayer`` (and the nested
  tensors of ``nn.TransformerEncoder``) is off. The fused flash / memory-efficient kernels have no double
  backward and no forward-mode derivative ("derivative for
  aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented"); the math backend is built
  from matmul and softmax, which have both. Results equal the fused kernels' up to float rounding. Every
  forward pass of the Objective (values too, for consistency) runs this way; the user's global settings are
  restored after each pass.

Any other op without a second derivative makes a product fail inside autograd; :func:`explain_unsupported`
turns that failure into an :class:`~flatminima.errors.UnsupportedOperationError` naming the op and the module
that calls it (found by re-running one example's forward pass under a dispatch mode that records each module's
aten ops).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

from ..errors import UnsupportedOperationError

__all__ = ["explain_unsupported", "measurement_mode", "note_attention", "unsupported_op"]

_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)
_NOTED: set[str] = set()


@contextmanager
def measurement_mode(model: nn.Module, bn: str) -> Iterator[None]:
    """Put ``model`` in its measurement state for the duration of the block (see the module docstring)."""
    modules = list(model.modules())
    flags = [m.training for m in modules]
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        for m in modules:
            m.training = bn == "train" and isinstance(m, _BATCH_NORMS)
        torch.backends.mha.set_fastpath_enabled(False)
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
        for m, flag in zip(modules, flags, strict=True):
            m.training = flag


def _has_attention(model: nn.Module) -> bool:
    return any(
        isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer))
        or "attention" in type(m).__name__.lower()
        for m in model.modules()
    )


def note_attention(model: nn.Module) -> None:
    """Say once per process that attention runs on the math backend (when the model has attention)."""
    if "attention" in _NOTED or not _has_attention(model):
        return
    _NOTED.add("attention")
    warnings.warn(
        "flatminima: scaled-dot-product attention runs on torch's math backend inside curvature products "
        "(the fused kernels have no second derivative), with the MultiheadAttention / TransformerEncoder "
        "fast path off; results equal the fused kernels' up to rounding (shown once per process)",
        UserWarning,
        stacklevel=3,
    )


_PATTERNS = (
    re.compile(r"derivative for '?(?:aten::)?([\w.]+?)'? is not implemented"),
    re.compile(r"Trying to use forward AD with (\w+) that does not support it"),
)


def unsupported_op(err: BaseException) -> str | None:
    """The aten op an autograd error says has no derivative (e.g. ``_cdist_backward``), else None."""
    text = str(err)
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match:
            return match.group(1)
    if "once_differentiable" in text:
        return "a custom autograd.Function marked @once_differentiable"
    return None


def _base_name(op: str) -> str:
    name = op.split(".")[0].lstrip("_")
    for suffix in ("_backward", "_double_backward"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


class _OpRecorder(TorchDispatchMode):
    """Records (module path, aten op name) for every op called while modules run."""

    def __init__(self, stack: list[str]) -> None:
        super().__init__()
        self.stack = stack
        self.calls: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls.append((self.stack[-1] if self.stack else "", func.__name__.split(".")[0]))
        return func(*args, **(kwargs or {}))


def locate_op(model: nn.Module, run: Callable[[], Any], op: str) -> list[tuple[str, str]]:
    """Modules (path, class name) in whose own forward an op matching ``op`` runs (innermost first)."""
    stack: list[str] = []

    def enter(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            stack.append(name)

        return hook

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        if stack:
            stack.pop()

    handles = []
    for name, module in model.named_modules():
        handles.append(module.register_forward_pre_hook(enter(name)))
        handles.append(module.register_forward_hook(leave))
    recorder = _OpRecorder(stack)
    try:
        with torch.no_grad(), recorder:
            run()
    except Exception:  # diagnosis only: report what was recorded before the failure
        pass
    finally:
        for h in handles:
            h.remove()
    base = _base_name(op)
    classes = {name: type(m).__name__ for name, m in model.named_modules()}
    found: list[tuple[str, str]] = []
    for path, name in recorder.calls:
        plain = name.lstrip("_")
        entry = (path, classes.get(path, ""))
        if base and (plain.startswith(base) or base.startswith(plain)) and entry not in found:
            found.append(entry)
    return found


def explain_unsupported(err: BaseException, model: nn.Module, run: Callable[[], Any] | None) -> None:
    """Raise an UnsupportedOperationError naming the op and module behind ``err``; return if ``err`` is not
    a missing-derivative failure."""
    op = unsupported_op(err)
    if op is None:
        return
    where = locate_op(model, run, op) if run is not None and not op.startswith("a custom") else []
    modules = ", ".join(f"{path or '<model>'} ({cls})" for path, cls in where) or "a module not identified"
    raise UnsupportedOperationError(
        f"the op {op} has no second derivative (needed for Hessian / Gauss-Newton products); it is called in "
        f"{modules}. Replace it by an op with a double backward, or measure only the parameters above it "
        f"(params=...). Autograd said: {str(err).splitlines()[0]}"
    ) from err
