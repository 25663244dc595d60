"""Projected gradient ascent of the loss over a ball of perturbations, the inner maximisation of the
worst-case sharpness measures (Keskar et al. 2017, eq. 3; Foret et al. 2021; Andriushchenko et al. 2023).

The perturbation is a linear image delta = M u of a vector u constrained to the ball ||u||_p <= radius
(p = 2 or inf): M = diag(r) for Keskar's box |delta_j| <= r_j (u in the unit cube), M = A diag(r) for his
random subspace, M = diag(c) for the adaptive balls ||delta / c||_p <= rho of Andriushchenko et al. The ascent
runs on u: g_u = M^T grad L(theta + M u), and

    u <- Proj_{||u||_p <= radius}(u + alpha_t d_t),   d_t = sign(g_u) (p = inf) or g_u / ||g_u||_2 (p = 2),

with alpha_t = 2 radius for the first quarter of the steps, then halved every further quarter (APGD-style
step-size reduction, Croce & Hein 2020). A step of 2 radius lands on the linear maximiser of the ball (the
Frank-Wolfe vertex rho sign(g_u), resp. close to rho g_u / ||g_u||), so on a convex loss the first quarter is
monotone ascent (for a quadratic at its minimum with p = 2 it is the power iteration on M^T H M); the later,
shorter steps refine; a restart ends early at a fixed point (u unchanged by a step: a vertex of the box whose
signs agree with the gradient's, or a point of the sphere along it). Every iterate is feasible, so the best
loss seen is a valid lower bound of the maximum; it is what is returned. Restart 0 starts at u = 0 plus a tiny
random tie-breaker (1e-3 radius: at an exact minimum g_u = 0 and u = 0 would never move); further restarts
start uniformly at random in the ball.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import grad_and_value

from ..errors import ConfigError
from ..objective import Objective

__all__ = ["NORMS", "AscentResult", "check_norm", "loss_and_grad", "maximize_on_ball", "random_in_ball"]

NORMS = ("2", "inf")


def check_norm(norm: str | float | int) -> str:
    """``"2"`` or ``"inf"`` from 2, "2", "l2", inf, "inf", "linf" (ConfigError otherwise)."""
    key = str(norm).lower().removeprefix("l")
    if key in ("2", "2.0"):
        return "2"
    if key in ("inf", "infinity"):
        return "inf"
    raise ConfigError(f"norm must be 2 or inf, got {norm!r}")


def loss_and_grad(obj: Objective, theta: Tensor) -> tuple[float, Tensor]:
    """I(theta) = (1/n) sum_i l_i(theta) and its gradient, one forward/backward pass per data chunk."""
    total = 0.0
    g = torch.zeros_like(theta)
    for x, y in obj.chunks():
        gi, vi = grad_and_value(lambda t, x=x, y=y: obj.losses_fn(t, x, y).sum() / obj.n)(theta)
        g += gi
        total += float(vi)
    return total, g


def _project(u: Tensor, norm: str, radius: float) -> Tensor:
    if norm == "inf":
        return u.clamp(-radius, radius)
    length = float(u.norm())
    return u * (radius / length) if length > radius else u


def _direction(g: Tensor, norm: str) -> Tensor:
    if norm == "inf":
        return torch.sign(g)
    length = float(g.norm())
    return g / length if length > 0 else g


def random_in_ball(dim: int, norm: str, radius: float, generator: torch.Generator) -> Tensor:
    """A point drawn uniformly from the ball ||u||_p <= radius (float64, CPU)."""
    if norm == "inf":
        return (2 * torch.rand(dim, generator=generator, dtype=torch.float64) - 1) * radius
    z = torch.randn(dim, generator=generator, dtype=torch.float64)
    r = float(torch.rand(1, generator=generator, dtype=torch.float64)) ** (1.0 / dim)
    return z / z.norm() * radius * r


@dataclass
class AscentResult:
    """The best loss found on the ball, the loss at the centre and the maximiser (u and delta = M u)."""

    value: float
    base: float
    u: Tensor
    delta: Tensor
    evaluations: int
    restart_values: list[float]


def maximize_on_ball(
    obj: Objective,
    apply: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    dim: int,
    norm: str,
    radius: float,
    steps: int = 20,
    restarts: int = 1,
    seed: int = 0,
    base: float | None = None,
) -> AscentResult:
    """max_{||u||_p <= radius} I(theta + M u) by projected gradient ascent (module docstring).

    ``apply(u) = M u`` ([dim] -> [p]) and ``adjoint(g) = M^T g`` ([p] -> [dim]); ``obj`` is evaluated at its
    base point ``obj.theta`` plus the perturbation. ``base`` (optional) is I(theta) if already known.
    """
    if steps < 1 or restarts < 1:
        raise ConfigError(f"steps and restarts must be positive integers, got {steps} and {restarts}")
    if not radius >= 0 or not math.isfinite(radius):
        raise ConfigError(f"the radius must be a finite number >= 0, got {radius!r}")
    theta = obj.theta
    base = obj.value() if base is None else base
    gen = torch.Generator().manual_seed(seed)
    best_value, best_u = base, torch.zeros(dim, dtype=theta.dtype, device=theta.device)
    evaluations, restart_values = 0, []
    quarter = max(1, math.ceil(steps / 4))
    for restart in range(restarts):
        if restart == 0:
            u = 1e-3 * random_in_ball(dim, norm, radius, gen)
        else:
            u = random_in_ball(dim, norm, radius, gen)
        u = u.to(theta.device, theta.dtype)
        top = -math.inf
        for t in range(steps + 1):
            delta = apply(u)
            if t == steps:  # the last iterate: its value only
                value = obj.value(theta + delta)
            else:
                value, g = loss_and_grad(obj, theta + delta)
            evaluations += 1
            if not math.isfinite(value):  # a diverging perturbation: the loss is unbounded here
                value = math.inf
            if value > top:
                top = value
            if value > best_value:
                best_value, best_u = value, u.clone()
            if t == steps or value == math.inf:
                break
            alpha = 2.0 * radius * 0.5 ** (t // quarter)
            step = _project(u + alpha * _direction(adjoint(g), norm), norm, radius)
            if torch.equal(step, u):  # a fixed point: shorter steps would not move either
                break
            u = step
        restart_values.append(top)
    return AscentResult(best_value, base, best_u, apply(best_u), evaluations, restart_values)
