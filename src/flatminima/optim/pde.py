"""PDE-smoothing optimizers of the thesis Ch. 4 (Sec. 4.6.1, Table 4.1): HJ and HEAT.

* HJ (non-viscous Hamilton-Jacobi, Sec. 4.6.1.2): u(x, gamma) = inf_y f(y) + |x - y|^2 / (2 gamma) (Hopf-Lax,
  the Moreau envelope); grad u(x, gamma) = (x - y*) / gamma with y* = prox_{gamma f}(x). The Entropy-SGD loop
  with L = 5, no noise and alpha = 0 runs gradient descent on y -> f(y) + |y - x|^2 / (2 gamma) and returns
  its last iterate as the estimate of y*.
* HEAT (Sec. 4.6.1.3, eq. 4.43): x <- x - (eta / L) sum_i grad f_b(x + eps_i), eps_i ~ N(0, gamma I): a
  Monte-Carlo gradient of the Gaussian smoothing (G_gamma * f)(x), the solution of the heat equation at time
  gamma / 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ._common import (
    Closure,
    GaussianNoise,
    call_closure,
    check_int,
    grads_of,
    group_value,
    require_closure,
    scoped,
)
from ._outer import SmoothingOptimizer
from .entropy import EntropySGD, _default_scope

__all__ = ["HJSGD", "HeatSGD"]


class HJSGD(EntropySGD):
    """Non-viscous Hamilton-Jacobi smoothing (thesis Sec. 4.6.1.2, eqs. 4.40-4.41 with beta_ex^{-1} = 0,
    <y> = y_L): L = 5 noiseless proximal steps y <- y - eta_y [grad f_b(y) + (y - x) / gamma] from y = x, then
    x <- x - lr (x - y_L) / gamma.

    ``scale_by_gamma`` defaults to True here, so the outer step is x <- x - lr * grad u(x, gamma) of the
    Hopf-Lax envelope once the inner loop has converged to the proximal point (eq. 4.41). The thesis's
    equivalent form eq. 4.42 (y reset to 0, y <- (1 - eta_y / gamma) y + eta_y grad f_b(x - y)) is the same
    iteration written in the displacement x - y. All other arguments as in :class:`EntropySGD` (``alpha``
    and ``temperature`` are fixed to 0).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        L: int = 5,
        inner_lr: float = 0.1,
        gamma: float | None = None,
        scale_by_gamma: bool = True,
        **kwargs: object,
    ) -> None:
        kwargs.pop("alpha", None)
        kwargs.pop("temperature", None)
        super().__init__(
            params,
            lr=lr,
            L=L,
            inner_lr=inner_lr,
            gamma=_default_scope(gamma, kwargs.get("coupling"), 1.0),
            alpha=0.0,
            temperature=0.0,
            scale_by_gamma=scale_by_gamma,
            **kwargs,  # type: ignore[arg-type]
        )


class HeatSGD(SmoothingOptimizer):
    """HEAT (thesis eq. 4.43): x <- x - (lr / L) sum_{i=1..L} grad f_b(x + eps_i), eps_i ~ N(0, gamma I).

    ``gamma`` is the variance of the perturbations (the scope; thesis: not stated, default 1e-3), scoped like
    Entropy-SGD's (``scoping`` or ``coupling``/``coupling_growth``); L = 20 (Sec. 4.6.1.3). Each of the L
    closure calls sees a fresh minibatch and a fresh perturbation drawn from ``generator``. Optional Nesterov
    ``momentum`` on the averaged gradient. ``step`` returns the mean loss over the L perturbed points (an
    estimate of the smoothed loss). ``lr``, ``momentum``, ``nesterov``, ``weight_decay``, ``L``, ``gamma``
    (current value), ``gamma_min`` and ``scoping`` live in ``param_groups`` (``L`` shared by all groups);
    parameters with ``requires_grad=False`` are neither perturbed nor moved.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        L: int = 20,
        gamma: float | None = None,
        scoping: float = 0.0,
        coupling: float | None = None,
        coupling_growth: float | None = None,
        gamma_min: float = 0.0,
        momentum: float = 0.0,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, L=check_int("L", L)
        )
        super().__init__(
            params,
            defaults,
            _default_scope(gamma, coupling, 1e-3),
            scoping,
            coupling,
            coupling_growth,
            gamma_min,
            generator,
            seed,
        )

    L = group_value("L")

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = require_closure(closure, "HeatSGD")
        active = self.active_groups()
        steps = check_int("L", self.shared("L"))
        params = [p for _, ps in active for p in ps]
        x = [p.detach().clone() for p in params]
        acc = [torch.zeros_like(p) for p in params]
        sigmas = [0.0 if math.isinf(scoped(g)) else math.sqrt(scoped(g)) for g, _ in active]
        bounds = [0]
        for _, ps in active:
            bounds.append(bounds[-1] + len(ps))
        total = 0.0
        ahead = steps if self.noise_ahead and any(sigmas) else 0
        with self.undo_on_error(params, x), GaussianNoise(params, self.generator, ahead) as noise:
            for _ in range(steps):
                if any(sigmas):
                    draw = noise.next()
                    for sigma, lo, hi in zip(sigmas, bounds, bounds[1:], strict=False):
                        if sigma:
                            torch._foreach_add_(params[lo:hi], draw[lo:hi], alpha=sigma)
                total += float(call_closure(closure, params))
                torch._foreach_add_(acc, grads_of(params))
                torch._foreach_copy_(params, x)
        torch._foreach_mul_(acc, 1.0 / steps)
        directions = []
        for (group, ps), lo, hi in zip(active, bounds, bounds[1:], strict=False):
            d = acc[lo:hi]
            if group["weight_decay"]:
                torch._foreach_add_(d, ps, alpha=group["weight_decay"])
            directions.append(d)
        self.outer_step(active, directions)
        return torch.tensor(total / steps)
