"""Base class of the smoothing optimizers: an outer step on a smoothed gradient, with scoping and momentum.

Entropy-SGD, HJ, HEAT (thesis Ch. 3-4) all estimate the gradient of a smoothed loss with L inner gradient
evaluations and then take one outer step x <- x - lr * d (SGD with optional Nesterov momentum, or Adam). The
scope gamma lives in every param group and shrinks after every outer step, gamma <- max(gamma (1 - scoping),
gamma_min) (see ``_common.scope_schedule`` and ``_common.advance_scope``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import (
    CountedOptimizer,
    advance_scope,
    check_fraction,
    check_positive,
    make_generator,
    momentum_direction,
    noise_ahead_possible,
    scope_schedule,
    scoped,
)


class SmoothingOptimizer(CountedOptimizer):
    """Common state: the outer-step counter ``t``, the noise generator, and per param group the scope
    ``gamma`` (current value), ``gamma_min`` and ``scoping`` next to ``lr`` and the optimizer's other
    hyper-parameters (``defaults``)."""

    needs_closure = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        defaults: dict,
        gamma: float | None,
        scoping: float,
        coupling: float | None,
        coupling_growth: float | None,
        gamma_min: float,
        generator: torch.Generator | None,
        seed: int | None,
    ) -> None:
        check_positive("lr", defaults["lr"], allow_zero=True)
        check_fraction("momentum", defaults.get("momentum", 0.0))
        check_positive("weight_decay", defaults.get("weight_decay", 0.0), allow_zero=True)
        gamma0, scoping = scope_schedule(gamma, scoping, coupling, coupling_growth)
        gamma_min = check_positive("gamma_min", gamma_min, allow_zero=True)
        defaults = {**defaults, "gamma": max(gamma0, gamma_min), "gamma_min": gamma_min, "scoping": scoping}
        super().__init__(params, defaults)
        self.generator = make_generator(generator, seed)
        self.noise_ahead = noise_ahead_possible(self.generator) and generator is None  # seed=: ours alone
        self.t = 0

    @property
    def gamma(self) -> float:
        """The current scope of the first param group, max(gamma, gamma_min) (thesis Sec. 3.2.3)."""
        return scoped(self.param_groups[0])

    @property
    def coupling(self) -> float:
        """The current coupling 1 / gamma (the ICLR paper's / public code's parameterization)."""
        return 0.0 if math.isinf(self.gamma) else 1.0 / self.gamma

    @torch.no_grad()
    def outer_step(self, active: list[tuple[dict, list[Tensor]]], directions: list[list[Tensor]]) -> None:
        """x <- x - lr * d per group, with (Nesterov) momentum on d when ``momentum > 0``; then the scopes
        shrink and t += 1."""
        for (group, params), d in zip(active, directions, strict=True):
            self.group_update(group, params, d)
        advance_scope(self.param_groups)
        self.t += 1

    def group_update(self, group: dict, params: list[Tensor], d: list[Tensor]) -> None:
        d = momentum_direction(self.state, params, d, group.get("momentum", 0.0), group.get("nesterov", True))
        torch._foreach_add_(params, d, alpha=-group["lr"])


class AdamOuter:
    """Mixin: the outer step is Adam (Kingma & Ba 2014) on the smoothed gradient d ("Entropy-Adam", thesis
    Sec. 3.2.2: Algorithm 2 wrapped in Adam). Per group: lr, betas, eps."""

    def group_update(self, group: dict, params: list[Tensor], d: list[Tensor]) -> None:
        b1, b2 = group["betas"]
        for p, di in zip(params, d, strict=True):
            st = self.state[p]  # type: ignore[attr-defined]
            if "exp_avg" not in st:
                st["exp_avg"], st["exp_avg_sq"], st["adam_step"] = torch.zeros_like(p), torch.zeros_like(p), 0
            st["adam_step"] += 1
            k = st["adam_step"]
            st["exp_avg"].mul_(b1).add_(di, alpha=1 - b1)
            st["exp_avg_sq"].mul_(b2).addcmul_(di, di, value=1 - b2)
            denom = (st["exp_avg_sq"] / (1 - b2**k)).sqrt_().add_(group["eps"])
            p.addcdiv_(st["exp_avg"], denom, value=-group["lr"] / (1 - b1**k))


def check_betas(betas: tuple[float, float]) -> tuple[float, float]:
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"betas must be two numbers in [0, 1), got {betas!r}")
    return float(betas[0]), float(betas[1])
