"""Trivialized-SGD (thesis Ch. 2, Algorithm 1, eqs. 2.19-2.20): SGD plus an annealed, fixed random field."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ._common import (
    Closure,
    CountedOptimizer,
    check_fraction,
    check_gradients,
    check_int,
    check_positive,
    gaussian_like,
    grads_of,
    group_value,
    make_generator,
    momentum_direction,
)

__all__ = ["TrivializedSGD", "field_scale"]


def field_scale(i: int, tau0: float, neurons: float, n_eff: float) -> float:
    """(1 + 2 tau_i / N)^{1/2} with tau_i = n (exp(-i / tau0) - 1/2)  (Algorithm 1 lines 8-9).

    Clipped at 0 when 1 + 2 tau_i / N < 0 (possible only when n > N). With n = N (our default) it is
    sqrt(2 exp(-i / tau0)): sqrt(2) times the critical field at i = 0, annealed to 0.
    """
    tau = neurons * (math.exp(-i / tau0) - 0.5)
    return math.sqrt(max(0.0, 1.0 + 2.0 * tau / n_eff))


class TrivializedSGD(CountedOptimizer):
    """x <- x - lr (grad f_b(x) + h_i),  h_i = (1 + 2 tau_i / N)^{1/2} h,  h ~ J sqrt(p (p - 2)) N(0, I)
    drawn once (thesis Algorithm 1).

    p = number of layers (``layers``; default: parameter tensors with >= 2 dimensions, i.e. weight matrices
    and conv kernels), N = (number of weights / p)^{1/2} (SPEC §4). Algorithm 1 writes n (line 8) and N
    (line 9); the thesis uses both for "number of neurons", so by default n = N (override with ``neurons``).
    For p < 3, where p (p - 2) <= 0, we use the thesis's large-p value nu_c ~ J p. Thesis mnistfc:
    J = 1e-3, tau0 = 500, Adam; here the base step is SGD with optional Nesterov ``momentum``
    (Line 10 "can be adapted"). ``lr``, ``momentum``, ``nesterov``, ``weight_decay``, ``J`` and ``tau0`` live
    in ``param_groups``; the optimizer state holds each parameter's fixed standard Gaussian draw (``field``;
    h = nu_c field), so changing ``J`` rescales the field from the next step on.
    """

    needs_closure = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.01,
        J: float = 1e-3,
        tau0: float = 500.0,
        layers: int | None = None,
        neurons: float | None = None,
        momentum: float = 0.0,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr, allow_zero=True)
        check_fraction("momentum", momentum)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            J=check_positive("J", J, allow_zero=True),
            tau0=check_positive("tau0", tau0),
        )
        super().__init__(params, defaults)
        all_params = [p for g in self.param_groups for p in self.trainable(g)]
        p = max(1, sum(t.dim() >= 2 for t in all_params)) if layers is None else check_int("layers", layers)
        self.layers = p
        self.n_eff = math.sqrt(sum(t.numel() for t in all_params) / p)
        self.neurons = self.n_eff if neurons is None else check_positive("neurons", neurons)
        self.generator = make_generator(generator, seed)
        self.t = 0

    J = group_value("J")
    tau0 = group_value("tau0")

    def critical_field(self, J: float) -> float:
        """nu_c = J sqrt(p (p - 2)) (p >= 3), else the large-p value J p: the field's standard deviation."""
        p = self.layers
        return J * (math.sqrt(p * (p - 2)) if p >= 3 else p)

    @property
    def nu_c(self) -> float:
        """nu_c of the first param group."""
        return self.critical_field(self.param_groups[0]["J"])

    def current_scale(self, group: dict | None = None) -> float:
        """|h_i| / |h| at the current iteration (of ``group``, default the first)."""
        tau0 = (group or self.param_groups[0])["tau0"]
        return field_scale(self.t, tau0, self.neurons, self.n_eff)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
            check_gradients([p for g in self.param_groups for p in self.trainable(g)])
        for group in self.param_groups:
            params = [p for p in self.trainable(group) if p.grad is not None]
            if not params:
                continue
            fields = []
            for p in params:
                st = self.state[p]
                if "field" not in st:  # the standard Gaussian behind h = nu_c field, drawn once
                    st["field"] = gaussian_like(p, self.generator)
                fields.append(st["field"])
            scale = self.current_scale(group) * self.critical_field(group["J"])
            d = torch._foreach_add(grads_of(params), fields, alpha=scale)
            if group["weight_decay"]:
                torch._foreach_add_(d, params, alpha=group["weight_decay"])
            d = momentum_direction(self.state, params, d, group["momentum"], group["nesterov"])
            torch._foreach_add_(params, d, alpha=-group["lr"])
        self.t += 1
        return loss
