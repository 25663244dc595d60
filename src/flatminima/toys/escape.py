"""Wu, Ma & E (2018), Sec. 2: the 1-D example where SGD escapes a minimum that GD keeps.

f(x) = (f_1(x) + f_2(x)) / 2, f_1 = min{x^2, 0.1 (x - 1)^2}, f_2 = min{x^2, 1.9 (x - 1)^2}; global minima at
x = 0 and x = 1. Near a minimum x*, f_i ~ (a_i / 2)(x - x*)^2 with per-example curvatures a_i; sharpness
a = mean a_i, non-uniformity s = std a_i (population std, Def. 3 in 1-D). SGD with batch B from n examples
(without replacement) is linearly stable iff (1 - eta a)^2 + eta^2 s^2 (n - B) / (B (n - 1)) <= 1 (Thm 1,
sufficient and necessary in 1-D); GD iff |1 - eta a| <= 1. At x* = 0: a_i = (2, 2), a = 2, s = 0; at x* = 1:
a_i = (0.2, 3.8), a = 2, s = 1.8. With eta = 0.7, B = 1: both stable for GD (a = 2 <= 2/0.7), but at x* = 1
SGD's factor is 0.16 + 0.49 * 3.24 = 1.75 > 1, so SGD escapes from x0 = 1 - 1e-5 to x = 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = [
    "COEFFS",
    "EscapeRun",
    "MinimumStability",
    "escape_objective",
    "escape_stability",
    "losses",
    "per_example_curvatures",
    "run_escape",
]

COEFFS = (0.1, 1.9)  # f_i = min{x^2, c_i (x - 1)^2}


def losses(x: Tensor) -> Tensor:
    """Per-example losses f_i(x), shape ``[..., 2]``."""
    c = torch.tensor(COEFFS, dtype=x.dtype, device=x.device)
    x = x.unsqueeze(-1)
    return torch.minimum(x**2, c * (x - 1) ** 2)


def _grads(x: Tensor) -> Tensor:
    """Per-example gradients f_i'(x), shape ``[..., 2]`` (the active branch of the min)."""
    c = torch.tensor(COEFFS, dtype=x.dtype, device=x.device)
    x = x.unsqueeze(-1)
    return torch.where(x**2 <= c * (x - 1) ** 2, 2 * x, 2 * c * (x - 1))


def per_example_curvatures(x_star: float) -> np.ndarray:
    """a_i = f_i''(x*) in closed form: 2 where x^2 is the active branch, 2 c_i where c_i (x - 1)^2 is."""
    c = np.array(COEFFS)
    return np.where(x_star**2 < c * (x_star - 1) ** 2, 2.0, 2.0 * c)


@dataclass(frozen=True)
class MinimumStability:
    """Sharpness a, non-uniformity s, the Thm 1 factor and verdicts at one minimum."""

    x_star: float
    sharpness: float
    non_uniformity: float
    sgd_factor: float
    gd_stable: bool
    sgd_stable: bool
    sharpness_bound: float
    non_uniformity_bound: float


def escape_stability(x_star: float, lr: float = 0.7, batch_size: int = 1) -> MinimumStability:
    """Closed-form a, s and the linear-stability verdicts of Wu, Ma & E Thm 1 (eq. 8) and eq. 9 (n = 2)."""
    n = len(COEFFS)
    if not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must lie in [1, {n}], got {batch_size}")
    a_i = per_example_curvatures(x_star)
    a, s = float(a_i.mean()), float(a_i.std())
    factor = (1 - lr * a) ** 2 + lr**2 * s**2 * (n - batch_size) / (batch_size * (n - 1))
    s_bound = math.inf if batch_size == n else math.sqrt(batch_size * (n - 1) / (n - batch_size)) / lr
    return MinimumStability(x_star, a, s, factor, abs(1 - lr * a) <= 1, factor <= 1, 2 / lr, s_bound)


@dataclass
class EscapeRun:
    """Iterates ``x`` [steps + 1] and full losses ``loss`` [steps + 1] of one run."""

    x: np.ndarray
    loss: np.ndarray


def run_escape(
    lr: float = 0.7, batch_size: int = 1, steps: int = 200, x0: float = 1 - 1e-5, seed: int = 0
) -> EscapeRun:
    """SGD (``batch_size`` = 1: one of the two examples drawn uniformly each step) or GD
    (``batch_size`` = 2) on f, in float64, from ``x0``. Returns the trajectory and the loss f(x_t) (the
    escape shows as a burst)."""
    if batch_size not in (1, 2):
        raise ConfigError(f"batch_size must be 1 (SGD) or 2 (GD), got {batch_size}")
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, 2, (steps,), generator=g)
    x = torch.tensor(x0, dtype=torch.float64)
    xs = [x.clone()]
    for t in range(steps):
        grads = _grads(x)
        x = x - lr * (grads.mean() if batch_size == 2 else grads[picks[t]])
        if not torch.isfinite(x):
            break
        xs.append(x.clone())
    traj = torch.stack(xs)
    return EscapeRun(traj.numpy(), losses(traj).mean(-1).numpy())


class _Scalar(nn.Module):
    """Model with one parameter x whose output on every example is x (for fm.Objective)."""

    def __init__(self, x: float) -> None:
        super().__init__()
        self.x = nn.Parameter(torch.tensor([x], dtype=torch.float64))

    def forward(self, inputs: Tensor) -> Tensor:
        return self.x.expand(inputs.shape[0])


def _example_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """Per-example loss min{x^2, c_i (x - 1)^2}, c_i carried in the targets."""
    return torch.minimum(outputs**2, targets * (outputs - 1) ** 2)


def escape_objective(x_star: float):  # -> flatminima.Objective
    """The example as an :class:`flatminima.Objective` (n = 2, one parameter), for ``fm.linear_stability``."""
    from ..objective import Objective

    coeffs = torch.tensor(COEFFS, dtype=torch.float64)
    return Objective(_Scalar(x_star), loss=_example_loss, x=torch.zeros(2, 1, dtype=torch.float64), y=coeffs)
