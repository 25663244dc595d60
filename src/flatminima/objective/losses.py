"""Per-example losses: the built-in ones, torch loss modules, and checked user callables.

An :class:`~flatminima.Objective` is always the mean over examples I(theta) = (1/n) sum_i l_i(theta), so
every loss is resolved here to a function ``(outputs, targets) -> [m]`` giving one l_i per example:

* ``"mse"`` — l_i = (1/K) ||f(x_i) - y_i||^2, so the mean over examples is ``nn.MSELoss()`` (the mean over all
  n*K entries; Wu, Ma & E 2018, Sec. 4).
* ``"cross_entropy"`` — class dimension 1 as in torch; targets are class indices or probability rows. For
  outputs ``[m, C, d1, ...]`` l_i is the mean over the example's positions (ignored targets, index -100, left
  out of that mean).
* ``"token_cross_entropy"`` — language-model style: outputs ``[m, T, V]`` (logits), targets ``[m, T]`` integer
  tokens; l_i is the mean cross-entropy over the sequence's tokens whose target is not ``-100`` (padding), so
  an *example is a sequence* and every sequence weighs the same, whatever its length (a sequence with no
  valid token has l_i = 0). Without padding the mean over examples equals ``nn.CrossEntropyLoss()`` over all
  tokens.
* A torch loss module (``nn.MSELoss()``, ``nn.CrossEntropyLoss()``, ``nn.BCEWithLogitsLoss()``,
  ``nn.KLDivLoss(reduction="batchmean")``, ...) is recognised and evaluated with ``reduction="none"``; l_i is
  the mean over the example's entries (the sum for ``"batchmean"``), so the Objective equals the module's own
  value. ``nn.MSELoss()`` and a default ``nn.CrossEntropyLoss()`` become the built-ins (closed-form output
  Hessians). Refused with a ConfigError, because they are not a mean over examples: ``reduction="sum"`` (the
  value grows with n) and class ``weight=`` of CrossEntropyLoss / NLLLoss with ``reduction="mean"`` (a
  weighted mean). With ignored targets (``ignore_index``) l_i is the mean over the example's non-ignored
  entries, as for the built-in cross-entropy.
* Any other callable ``(outputs, targets) -> per-example losses`` must return shape ``[m]``; a scalar (e.g.
  ``lambda f, y: ((f - y) ** 2).mean()``, or ``nn.functional.mse_loss``) is refused with a ConfigError rather
  than guessed, because a mean and a sum over the chunk cannot be told apart, and chunked products would be
  silently wrong by the chunk size.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]

__all__ = ["IGNORE_INDEX", "LOSSES", "LossFn", "loss_name", "per_example_loss"]

#: Target value left out of the cross-entropy means (torch's default ``ignore_index``).
IGNORE_INDEX = -100

_INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8)


def _mse(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-example MSE, (1/K) ||f - y||^2, so that its mean equals ``nn.MSELoss()``."""
    diff = outputs - targets.to(outputs.dtype)
    return diff.reshape(diff.shape[0], -1).pow(2).mean(dim=1)


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean over all but the first dimension, over the entries where ``mask`` is true (all if None)."""
    flat = values.reshape(values.shape[0], -1)
    if mask is None:
        return flat.mean(dim=1)
    keep = mask.reshape(values.shape[0], -1).to(flat.dtype)
    return (flat * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


def _cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-example cross-entropy (class dimension 1); targets are class indices or probability rows."""
    if targets.dtype in _INT_DTYPES:
        t = targets.long()
        losses = nn.functional.cross_entropy(outputs, t, reduction="none", ignore_index=IGNORE_INDEX)
        return losses if losses.dim() == 1 else _masked_mean(losses, t != IGNORE_INDEX)
    losses = -(targets.to(outputs.dtype) * torch.log_softmax(outputs, dim=1)).sum(dim=1)
    return losses if losses.dim() == 1 else _masked_mean(losses, None)


def _token_cross_entropy(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-sequence mean token cross-entropy: outputs ``[m, T, V]``, int targets ``[m, T]`` (-100: pad)."""
    if outputs.dim() != 3 or targets.dim() != 2 or targets.dtype not in _INT_DTYPES:
        raise ConfigError(
            "token_cross_entropy needs outputs [n, T, V] (logits) and integer targets [n, T]; got outputs "
            f"{tuple(outputs.shape)} and targets {tuple(targets.shape)} ({targets.dtype})"
        )
    t = targets.long()
    logits = outputs.transpose(1, 2)
    losses = nn.functional.cross_entropy(logits, t, reduction="none", ignore_index=IGNORE_INDEX)
    return _masked_mean(losses, t != IGNORE_INDEX)


LOSSES: dict[str, LossFn] = {
    "mse": _mse,
    "cross_entropy": _cross_entropy,
    "token_cross_entropy": _token_cross_entropy,
}

_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)


def _builtin_for(module: nn.Module) -> str | None:
    """The built-in loss a torch loss module equals exactly, if any."""
    if type(module) is nn.MSELoss and module.reduction in ("mean", "none"):
        return "mse"
    if (
        type(module) is nn.CrossEntropyLoss
        and module.reduction in ("mean", "none")
        and module.weight is None
        and module.ignore_index == IGNORE_INDEX
        and module.label_smoothing == 0.0
    ):
        return "cross_entropy"
    return None


def _module_loss(module: nn.modules.loss._Loss) -> LossFn:
    """Per-example form of a torch loss module (see the module docstring for the rules)."""
    name = type(module).__name__
    reduction = getattr(module, "reduction", "mean")
    if reduction == "sum":
        raise ConfigError(
            f"{name}(reduction='sum') sums over the batch, so its value grows with the number of examples; "
            "flatminima measures the mean over examples: pass reduction='mean' (or a per-example loss)"
        )
    if isinstance(module, nn.CTCLoss):
        raise ConfigError("CTCLoss is not supported: pass a per-example loss (outputs, targets) -> [n]")
    if isinstance(module, _CLASS_LOSSES) and module.weight is not None and reduction == "mean":
        raise ConfigError(
            f"{name}(weight=...) with reduction='mean' is a class-weighted mean, not a mean over examples; "
            "pass reduction='none' (per-example weighted losses, averaged over examples) or drop weight="
        )
    elementwise = copy.copy(module)
    elementwise.reduction = "none"
    ignore = module.ignore_index if isinstance(module, _CLASS_LOSSES) else None
    per_sum = reduction == "batchmean"

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        out = elementwise(outputs, targets)
        if not isinstance(out, Tensor) or out.dim() == 0 or out.shape[0] != outputs.shape[0]:
            raise ConfigError(
                f"{name} with reduction='none' did not return one loss per example (got shape "
                f"{tuple(getattr(out, 'shape', ()))} for {outputs.shape[0]} examples): "
                "pass a per-example loss"
            )
        if out.dim() == 1:
            return out
        if per_sum:
            return out.reshape(out.shape[0], -1).sum(dim=1)
        mask = targets != ignore if ignore is not None and targets.dtype in _INT_DTYPES else None
        return _masked_mean(out, mask)

    loss.__name__ = name
    return loss


def _checked(fn: Callable[..., Tensor]) -> LossFn:
    """A user callable, with its result checked to be one loss per example."""
    name = getattr(fn, "__name__", type(fn).__name__)

    def loss(outputs: Tensor, targets: Tensor) -> Tensor:
        out = fn(outputs, targets)
        m = outputs.shape[0]
        if not isinstance(out, Tensor):
            raise ConfigError(f"the loss {name!r} returned {type(out).__name__}, not a tensor of {m} losses")
        if out.dim() == 0:
            raise ConfigError(
                f"the loss {name!r} returned a scalar; flatminima needs one loss per example (shape [n]) to "
                "average over examples and chunks exactly: return the per-example losses (e.g. "
                "reduction='none' and a mean over the non-batch dimensions), pass a torch loss module "
                "such as nn.MSELoss() (recognised), or a built-in name ('mse', 'cross_entropy', "
                "'token_cross_entropy')"
            )
        if out.dim() != 1 or out.shape[0] != m:
            raise ConfigError(
                f"the loss {name!r} returned shape {tuple(out.shape)} for {m} examples; it must return "
                f"one loss per example, shape [{m}] (reduce the other dimensions yourself)"
            )
        return out

    loss.__name__ = name
    loss._fm_checked = True  # type: ignore[attr-defined]
    return loss


def loss_name(loss: str | Callable[..., Tensor]) -> str:
    """The name a loss is reported under: the built-in name (also for a module that equals one), else the
    module's class name or the callable's ``__name__``."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, nn.modules.loss._Loss):
        return _builtin_for(loss) or type(loss).__name__
    return getattr(loss, "__name__", "custom")


def per_example_loss(loss: str | Callable[..., Tensor]) -> LossFn:
    """Resolve a loss name, a torch loss module or a callable to a per-example loss
    ``(outputs, targets) -> [m]`` (rules in the module docstring). Unknown names and unsupported modules
    raise ConfigError."""
    if isinstance(loss, str):
        if loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; choose one of: {', '.join(LOSSES)} or pass a callable")
        return LOSSES[loss]
    if isinstance(loss, nn.modules.loss._Loss):
        builtin = _builtin_for(loss)
        return LOSSES[builtin] if builtin else _module_loss(loss)
    if not callable(loss):
        kind = type(loss).__name__
        raise ConfigError(f"loss must be a name, a torch loss module or a callable, got {kind}")
    return loss if getattr(loss, "_fm_checked", False) else _checked(loss)
