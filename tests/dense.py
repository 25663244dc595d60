"""Independent dense references: full Hessians with torch.autograd.functional.hessian in float64."""

from __future__ import annotations

import torch
from torch import Tensor

from flatminima import Objective


def dense_hessian(obj: Objective, x: Tensor | None = None, y: Tensor | None = None) -> Tensor:
    """Dense Hessian of the mean loss on (x, y) (default: all data) at the objective's base point."""
    x = obj.x if x is None else x
    y = obj.y if y is None else y
    return torch.autograd.functional.hessian(lambda t: obj.losses_fn(t, x, y).mean(), obj.theta.clone())


def per_example_hessians(obj: Objective) -> list[Tensor]:
    """H_i for each example, densely."""
    return [dense_hessian(obj, obj.x[i : i + 1], obj.y[i : i + 1]) for i in range(obj.n)]


def dense_sigma(obj: Objective) -> Tensor:
    """Sigma = (1/n) sum_i H_i^2 - H^2 (Wu, Ma & E 2018, Def. 3), densely."""
    hs = per_example_hessians(obj)
    h = sum(hs) / len(hs)
    return sum(hi @ hi for hi in hs) / len(hs) - h @ h
