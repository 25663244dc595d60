"""Optimizers of a training phase: torch's GD/SGD/Adam/L-BFGS and, lazily, those of ``flatminima.optim``.

``flatminima.optim`` is imported only when a phase names one of its optimizers, so the trainer works without
it. GD is full-batch SGD. An optimizer whose class sets ``needs_closure = True`` (the Entropy-SGD family) and
L-BFGS are stepped with a closure; see ``trainer``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConfigError, unknown

if TYPE_CHECKING:
    from ..config import Phase

__all__ = [
    "BUILTIN",
    "check_optimizer_name",
    "make_optimizer",
    "needs_closure",
    "optimizer_names",
    "same_kind",
    "update_hyperparameters",
]

BUILTIN = ("gd", "sgd", "adam", "lbfgs")


def _optim_module() -> ModuleType | None:
    try:
        return importlib.import_module("flatminima.optim")
    except ModuleNotFoundError as exc:
        if exc.name == "flatminima.optim":
            return None
        raise


def optimizer_names() -> list[str]:
    """All optimizer names a phase accepts."""
    module = _optim_module()
    extra = list(module.available()) if module is not None and hasattr(module, "available") else []
    return sorted(set(BUILTIN) | {name.lower() for name in extra})


def check_optimizer_name(name: str) -> str:
    """The normalized (lower-case) name, or :class:`UnknownNameError` listing the choices."""
    key = name.strip().lower().replace("_", "-")
    if key in BUILTIN:
        return key
    names = optimizer_names()
    if key not in names:
        raise unknown("optimizer", name, names)
    return key


def make_optimizer(phase: Phase, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer of ``phase`` over ``params``.

    ``momentum``, ``nesterov`` and ``weight_decay`` are passed to ``flatminima.optim`` optimizers only when
    set (not all of them take them); ``options`` always. Bad keyword arguments become a :class:`ConfigError`.
    """
    params = list(params)
    name, opts = phase.optimizer, dict(phase.options)
    try:
        if name in ("gd", "sgd"):
            return torch.optim.SGD(
                params,
                lr=phase.lr,
                momentum=phase.momentum,
                nesterov=phase.nesterov,
                weight_decay=phase.weight_decay,
                **opts,
            )
        if name == "adam":
            return torch.optim.Adam(params, lr=phase.lr, weight_decay=phase.weight_decay, **opts)
        if name == "lbfgs":
            if phase.weight_decay:
                raise ConfigError("lbfgs takes no weight_decay")
            return torch.optim.LBFGS(params, lr=phase.lr, **opts)
        module = _optim_module()
        if module is None:
            raise unknown("optimizer", name, BUILTIN)
        kwargs: dict[str, Any] = {"lr": phase.lr}
        if phase.momentum:
            kwargs["momentum"] = phase.momentum
        if phase.nesterov:
            kwargs["nesterov"] = True
        if phase.weight_decay:
            kwargs["weight_decay"] = phase.weight_decay
        kwargs.update(opts)
        return module.make(name, params, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"optimizer {name}: {exc}") from None


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers stepped with a loss closure (L-BFGS, ``needs_closure = True`` classes)."""
    return isinstance(optimizer, torch.optim.LBFGS) or bool(getattr(optimizer, "needs_closure", False))


def same_kind(a: Phase | None, b: Phase) -> bool:
    """Whether phase ``b`` continues phase ``a``'s optimizer (same name and options): its state is kept."""
    return a is not None and a.optimizer == b.optimizer and a.options == b.options


def update_hyperparameters(optimizer: torch.optim.Optimizer, phase: Phase) -> None:
    """Set lr / momentum / nesterov / weight_decay of a kept optimizer to the new phase's values."""
    values = {
        "lr": phase.lr,
        "momentum": phase.momentum,
        "nesterov": phase.nesterov,
        "weight_decay": phase.weight_decay,
    }
    for group in optimizer.param_groups:
        for key, value in values.items():
            if key in group:
                group[key] = value
