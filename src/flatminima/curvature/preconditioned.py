"""Preconditioned sharpness lambda_max(P^{-1} H) of adaptive optimizers and its stability threshold.

An adaptive step x <- x - eta P^{-1} m with a diagonal preconditioner P, frozen over a few steps, is the
momentum method on the quadratic with Hessian P^{-1/2} H P^{-1/2} (change of variables z = P^{1/2} x), so its
linear stability is decided by

    lambda_max(P^{-1} H) = lambda_max(P^{-1/2} H P^{-1/2})    (similar matrices; the right one is symmetric)

(Wu, Ma & E 2018, Sec. 5: x <- x - eta D^{-1} grad f is stable at a minimum only if lambda_max(D^{-1} H) <=
2/eta; Cohen et al. 2022, "Adaptive gradient methods at the edge of stability", Sec. 2-3). Thresholds:

* EMA momentum m <- beta1 m + (1 - beta1) g (Adam): stable iff lambda < (2 + 2 beta1) / (eta (1 - beta1))
  (Cohen et al. 2022; 38/eta at beta1 = 0.9), which is 2/eta without momentum (beta1 = 0).
* heavy-ball momentum b <- mu b + g (torch's RMSprop ``momentum``): stable iff lambda < (2 + 2 mu) / eta
  (Cohen et al. 2022, Sec. 2), 2/eta for mu = 0 (Wu, Ma & E 2018, Sec. 5).

P from an optimizer state (``torch.optim.Adam`` / ``AdamW`` / ``RMSprop``, or their ``state_dict()``), as
torch computes it: Adam P = sqrt(v_hat) + eps with v_hat = v / (1 - beta2^t) (``max_exp_avg_sq`` with
amsgrad); RMSprop P = sqrt(v) + eps (centered: sqrt(v - g_avg^2) + eps). Adam's 1/(1 - beta1^t) factor on m
is ignored (it is ~1 late in training, where the criterion is used). L2 weight decay (Adam, RMSprop
``weight_decay``: the optimizer sees f + wd |x|^2 / 2) adds wd I to H, i.e. wd P^{-1} to the operator;
AdamW's decoupled decay is not a curvature term and is left out (reported in ``extra``). The top eigenvalue
is found by Lanczos on the composed symmetric operator P^{-1/2} (H P^{-1/2} v).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimate import Estimate
from .lanczos import lanczos
from .operators import HessianOperator, LinearOperator

__all__ = ["Preconditioner", "preconditioned_sharpness", "preconditioner_from_state", "stability_threshold"]


@dataclass
class Preconditioner:
    """The diagonal P (flat, over the objective's selected parameters) of an adaptive optimizer and the
    quantities of its stability threshold."""

    diagonal: Tensor
    lr: float
    momentum: float
    momentum_style: str  # "ema" (Adam) | "heavy-ball" (RMSprop)
    optimizer: str  # "adam" | "adamw" | "rmsprop" | "explicit"
    weight_decay: float = 0.0  # L2 weight decay (part of the curvature)
    decoupled_weight_decay: float = 0.0  # AdamW's (not included)
    step: int = 0


def stability_threshold(lr: float, momentum: float = 0.0, style: str = "ema") -> float:
    """(2 + 2 beta1) / (eta (1 - beta1)) for EMA momentum, (2 + 2 mu) / eta for heavy ball; 2/eta without."""
    if not lr > 0:
        raise ConfigError(f"the learning rate must be positive, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ConfigError(f"the momentum must lie in [0, 1), got {momentum!r}")
    if style == "ema":
        return (2 + 2 * momentum) / (lr * (1 - momentum))
    if style == "heavy-ball":
        return (2 + 2 * momentum) / lr
    raise ConfigError(f"momentum style must be 'ema' or 'heavy-ball', got {style!r}")


class _Diagonal(LinearOperator):
    """diag(d) v (not counted as a curvature product: it costs nothing)."""

    def __init__(self, d: Tensor) -> None:
        super().__init__(d.numel(), d.dtype, d.device)
        self.d = d

    def _matvec(self, v: Tensor) -> Tensor:
        return self.d * v


def _kind(group: dict[str, Any]) -> str:
    if "betas" in group and "amsgrad" in group and "momentum_decay" not in group:
        return "adamw" if group.get("decoupled_weight_decay") else "adam"
    if "alpha" in group and "centered" in group:
        return "rmsprop"
    raise ConfigError(
        "not an Adam/AdamW/RMSprop optimizer state (its param_groups have keys "
        f"{sorted(k for k in group if k != 'params')})"
    )


def _state_dict(optimizer: Any) -> dict[str, Any]:
    if isinstance(optimizer, torch.optim.Optimizer):
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)):
            raise ConfigError(f"need an Adam, AdamW or RMSprop optimizer, got {type(optimizer).__name__}")
        return optimizer.state_dict()
    if not isinstance(optimizer, dict) or "state" not in optimizer or "param_groups" not in optimizer:
        raise ConfigError("expected a torch optimizer or its state_dict() (keys 'state' and 'param_groups')")
    return optimizer


def _step_count(value: Any) -> int:
    return int(value.item() if isinstance(value, Tensor) else value)


def _diag_of(kind: str, group: dict[str, Any], st: dict[str, Any], shape: torch.Size, name: str) -> Tensor:
    """P for one parameter from its optimizer state (float64)."""
    eps = float(group["eps"])
    if kind in ("adam", "adamw"):
        key = "max_exp_avg_sq" if group.get("amsgrad") else "exp_avg_sq"
        if key not in st or "step" not in st:
            raise ConfigError(
                f"the optimizer state of {name!r} has no {key!r}: has the optimizer taken a step?"
            )
        t = _step_count(st["step"])
        beta2 = float(group["betas"][1])
        v = st[key].detach().to(torch.float64) / (1 - beta2**t)
    else:
        if "square_avg" not in st:
            raise ConfigError(f"the optimizer state of {name!r} has no 'square_avg': has it taken a step?")
        v = st["square_avg"].detach().to(torch.float64)
        if group.get("centered"):
            v = v - st["grad_avg"].detach().to(torch.float64) ** 2
    if tuple(v.shape) != tuple(shape):
        raise ConfigError(
            f"optimizer state of {name!r} has shape {tuple(v.shape)}, the parameter {tuple(shape)}"
        )
    return v.clamp_min(0).sqrt() + eps


def preconditioner_from_state(obj, optimizer: Any) -> Preconditioner:
    """The diagonal P of an Adam/AdamW/RMSprop optimizer (or its ``state_dict()``) over ``obj``'s parameters.

    The state's parameter i is the model's i-th trainable parameter (``model.parameters()`` order, as
    ``fm.train`` builds its optimizers); with an optimizer object whose parameters are the model's own
    tensors they are matched by identity instead. All groups holding selected parameters must share lr and
    momentum.
    """
    sd = _state_dict(optimizer)
    groups = sd["param_groups"]
    if not groups:
        raise ConfigError("the optimizer state has no parameter groups")
    kinds = {_kind(g) for g in groups}
    if len(kinds) > 1:
        raise ConfigError(f"mixed optimizer groups {sorted(kinds)}")
    kind = kinds.pop()
    group_of = {int(i): g for g in groups for i in g["params"]}
    trainable = [k for k, p in obj.model.named_parameters() if p.requires_grad]
    index = {k: i for i, k in enumerate(trainable)}
    by_identity: dict[str, int] = {}
    if isinstance(optimizer, torch.optim.Optimizer):
        ids = [id(p) for g in optimizer.param_groups for p in g["params"]]
        named = dict(obj.model.named_parameters())
        by_identity = {k: ids.index(id(named[k])) for k in obj.param_names if id(named[k]) in ids}
    if not by_identity and len(group_of) != len(trainable):
        raise ConfigError(
            f"the optimizer state holds {len(group_of)} parameters, the model has {len(trainable)} trainable"
        )
    parts, used = [], []
    for name, shape in zip(obj.param_names, obj.param_shapes, strict=True):
        i = by_identity.get(name, None if by_identity else index[name])
        if i is None or i not in group_of:
            raise ConfigError(f"parameter {name!r} is not handled by the optimizer")
        st = sd["state"].get(i, sd["state"].get(str(i)))
        if not st:
            raise ConfigError(f"the optimizer has no state for {name!r}: has it taken a step?")
        parts.append(_diag_of(kind, group_of[i], st, shape, name).reshape(-1))
        used.append((group_of[i], st))
    first = used[0][0]
    keys = ("lr", "betas") if kind != "rmsprop" else ("lr", "momentum")
    for g, _ in used:
        if any(g[k] != first[k] for k in keys):
            raise ConfigError(f"the selected parameters sit in groups with different {' / '.join(keys)}")
    wd = float(first.get("weight_decay", 0.0))
    decoupled = kind == "adamw"
    return Preconditioner(
        diagonal=torch.cat(parts).to(obj.device, obj.dtype),
        lr=float(first["lr"]),
        momentum=float(first["betas"][0]) if kind != "rmsprop" else float(first["momentum"]),
        momentum_style="ema" if kind != "rmsprop" else "heavy-ball",
        optimizer=kind,
        weight_decay=0.0 if decoupled else wd,
        decoupled_weight_decay=wd if decoupled else 0.0,
        step=max(_step_count(st.get("step", 0)) for _, st in used),
    )


def preconditioned_sharpness(
    obj,
    optimizer: Any = None,
    preconditioner: Tensor | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    momentum_style: str = "ema",
    tol: float = 1e-4,
    max_iter: int = 100,
    v0: Tensor | None = None,
    seed: int = 0,
) -> Estimate:
    """lambda_max(P^{-1} H) and the stability verdict against the threshold (module docstring).

    Give ``optimizer`` (an Adam/AdamW/RMSprop optimizer or its ``state_dict()``) or an explicit flat
    ``preconditioner`` P (positive, over the selected parameters; then ``lr``, ``momentum`` and
    ``momentum_style`` set the threshold, which is NaN without ``lr``). ``lr`` / ``momentum`` override the
    state's. ``extra``: ``threshold``, ``stable`` (value <= threshold), ``ratio`` (value / threshold),
    ``lr``, ``momentum``, ``momentum_style``, ``optimizer``, ``weight_decay``, ``step``, ``eigenvector``
    (of P^{-1/2} H P^{-1/2}; P^{-1/2} of it is the eigenvector of P^{-1} H).
    """
    if (optimizer is None) == (preconditioner is None):
        raise ConfigError("pass either an optimizer (or its state_dict) or an explicit preconditioner")
    if optimizer is not None:
        pre = preconditioner_from_state(obj, optimizer)
    else:
        diag = preconditioner.detach().to(obj.device, obj.dtype).reshape(-1)
        if diag.numel() != obj.num_params:
            raise ConfigError(f"preconditioner has {diag.numel()} entries, the objective {obj.num_params}")
        pre = Preconditioner(diag, math.nan, 0.0, momentum_style, "explicit")
    if not bool((pre.diagonal > 0).all()) or not bool(torch.isfinite(pre.diagonal).all()):
        raise ConfigError("the preconditioner must be positive and finite (an Adam eps of 0 with zero v?)")
    if lr is not None:
        pre.lr = float(lr)
    if momentum is not None:
        pre.momentum = float(momentum)
    threshold = (
        stability_threshold(pre.lr, pre.momentum, pre.momentum_style) if math.isfinite(pre.lr) else math.nan
    )
    start = time.perf_counter()
    hess = HessianOperator(obj)
    d = _Diagonal(pre.diagonal.rsqrt())
    op: LinearOperator = d @ (hess @ d)  # type: ignore[assignment]
    if pre.weight_decay:
        op = op + pre.weight_decay * _Diagonal(1.0 / pre.diagonal)
    r = lanczos(op, k=1, which="LA", tol=tol, max_iter=max_iter, v0=v0, seed=seed)
    value = float(r.eigenvalues[0])
    return Estimate(
        value=value,
        residual=float(r.residuals[0]),
        matvecs=hess.matvecs,
        converged=r.converged,
        seconds=time.perf_counter() - start,
        extra={
            "threshold": threshold,
            "stable": bool(value <= threshold) if math.isfinite(threshold) else None,
            "ratio": value / threshold if math.isfinite(threshold) else math.nan,
            "lr": pre.lr,
            "momentum": pre.momentum,
            "momentum_style": pre.momentum_style,
            "optimizer": pre.optimizer,
            "weight_decay": pre.weight_decay,
            "decoupled_weight_decay": pre.decoupled_weight_decay,
            "step": pre.step,
            "preconditioner_min": float(pre.diagonal.min()),
            "preconditioner_max": float(pre.diagonal.max()),
            "eigenvector": r.eigenvectors[:, 0].detach(),
        },
    )
