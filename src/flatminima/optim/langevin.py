"""Langevin optimizers: SGDL (Theory IIb eq. 5) and SGLD (Welling & Teh 2011).

Both are a (minibatch) gradient step plus seeded Gaussian noise; fed the full-batch gradient they are GDL,
the Euler-Maruyama discretization of dX = -grad U dt + sqrt(2T) dB whose stationary law is exp(-U/T)/Z
(Theory IIb eq. 9).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from ..errors import ConfigError
from ._common import (
    Closure,
    CountedOptimizer,
    add_noise_,
    check_gradients,
    check_positive,
    grads_of,
    make_generator,
)

NoiseSchedule = str | Callable[[int], float]

__all__ = ["SGDL", "SGLD", "noise_at"]


def noise_at(schedule: NoiseSchedule, noise: float, t: int, t0: float) -> float:
    """gamma'_t of Theory IIb eq. 5 at step t (0-based).

    ``"constant"``: gamma'_t = noise (Theory IIb Fig. 2 uses constant power); ``"1/t"``: gamma'_t = noise t0 /
    (t0 + t), decaying to 0 like 1/t as eq. 5 asks; a callable ``t -> gamma'_t`` is used as given.
    """
    if callable(schedule):
        return float(schedule(t))
    if schedule == "constant":
        return noise
    if schedule == "1/t":
        return noise * t0 / (t0 + t)
    raise ConfigError(f"unknown noise schedule {schedule!r}; choose 'constant', '1/t' or a callable")


class SGDL(CountedOptimizer):
    """SGD plus Gaussian noise (Theory IIb eq. 5): f_{t+1} = f_t - gamma_t grad V(f_t, z_t) + gamma'_t W_t.

    ``lr`` is gamma_t (use a torch lr scheduler to anneal it), ``noise`` the scale gamma'_0 of the standard
    Gaussian W_t and ``noise_schedule`` its decay (``"constant"``, ``"1/t"`` with time constant ``noise_t0``
    steps, or a callable ``t -> gamma'_t``). The noise is drawn from ``generator`` (or a generator seeded with
    ``seed``): same seed, same trajectory. With a constant noise and learning rate, the stationary law of the
    full-batch version (GDL) is exp(-U/T)/Z with T = gamma'^2 / (2 gamma) (small-step limit).
    ``weight_decay`` adds ``weight_decay * f`` to the gradient. All hyper-parameters live in ``param_groups``;
    parameters without a gradient (frozen, or unused by the loss) are skipped as in torch's SGD, and a
    closure (optional) that left no gradient at all is a ConfigError. ``state_dict`` holds t and the noise
    generator's state: a resumed run continues bit for bit.
    """

    needs_closure = False

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.01,
        noise: float = 0.0,
        noise_schedule: NoiseSchedule = "constant",
        noise_t0: float = 1.0,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("lr", lr, allow_zero=True)
        check_positive("noise", noise, allow_zero=True)
        check_positive("noise_t0", noise_t0)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        noise_at(noise_schedule, noise, 0, noise_t0)  # validates the schedule name
        defaults = dict(
            lr=lr, noise=noise, noise_schedule=noise_schedule, noise_t0=noise_t0, weight_decay=weight_decay
        )
        super().__init__(params, defaults)
        self.generator = make_generator(generator, seed)
        self.t = 0

    def _scales(self, group: dict) -> tuple[float, float]:
        """(gradient step size, noise standard deviation) of this step."""
        return group["lr"], noise_at(group["noise_schedule"], group["noise"], self.t, group["noise_t0"])

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
            lr, scale = self._scales(group)
            grads = grads_of(params)
            if group["weight_decay"]:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            torch._foreach_add_(params, grads, alpha=-lr)
            add_noise_(params, scale, self.generator)
        self.t += 1
        return loss


class SGLD(SGDL):
    """SGLD (Welling & Teh 2011): x <- x - eta_t grad f_b(x) + sqrt(2 eta_t T) N.

    ``temperature`` is T = beta^{-1}; the stationary law (small eta, full batch) is exp(-f/T)/Z. The step size
    is eta_t = lr / (1 + t)^lr_decay (thesis Sec. 3.3 baseline: eta/(1+t)^b; ``lr_decay = 0`` keeps it
    constant). A torch lr scheduler may also change ``lr``; the noise always follows the current step size.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.01,
        temperature: float = 1e-4,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive("temperature", temperature, allow_zero=True)
        check_positive("lr_decay", lr_decay, allow_zero=True)
        super().__init__(params, lr=lr, weight_decay=weight_decay, generator=generator, seed=seed)
        for group in self.param_groups:
            group.setdefault("temperature", temperature)
            group.setdefault("lr_decay", lr_decay)

    def _scales(self, group: dict) -> tuple[float, float]:
        eta = group["lr"] / (1.0 + self.t) ** group["lr_decay"]
        return eta, math.sqrt(2.0 * eta * group["temperature"])
