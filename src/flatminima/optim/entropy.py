"""Entropy-SGD and Entropy-Adam (Chaudhari's thesis, Algorithm 2, Sec. 3.2; eqs. 4.40-4.41).

Local entropy f_gamma(x) = -log int exp(-f(y) - |x - y|^2 / (2 gamma)) dy has gradient
grad f_gamma(x) = gamma^{-1} (x - <y>), <y> the mean of rho(y; x) ~ exp(-beta (f(y) + |x - y|^2 / (2 gamma)))
(thesis Ch. 3). Entropy-SGD estimates <y> with L steps of SGLD and steps along x - <y>.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ._common import (
    Closure,
    GaussianNoise,
    call_closure,
    check_fraction,
    check_int,
    check_positive,
    grads_of,
    inv,
    momentum_direction,
    require_closure,
    scale_shift_,
)
from ._outer import AdamOuter, SmoothingOptimizer, check_betas

__all__ = ["EntropyAdam", "EntropySGD", "local_entropy_inner_loop"]


def _default_scope(gamma: float | None, coupling: float | None, default: float) -> float | None:
    """``gamma`` if given, else ``default`` unless the coupling parameterization is used."""
    return default if gamma is None and coupling is None else gamma


@torch.no_grad()
def local_entropy_inner_loop(
    closure: Closure,
    params: list[Tensor],
    x: list[Tensor],
    z: list[Tensor],
    gamma: float,
    steps: int,
    inner_lr: float,
    alpha: float,
    temperature: float,
    inner_momentum: float = 0.0,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
    closure_kwargs: dict | None = None,
    noise_ahead: bool = False,
) -> Tensor:
    """Run the SGLD inner loop of Algorithm 2 in place on ``params`` (= y, which must start at x).

    For l = 1..L:  dy = grad f_b(y) + (y - x) / gamma [+ weight_decay * y]      (Alg. 2 line 3, eq. 4.40)
                   y <- y - eta_y dy + sqrt(2 eta_y / beta) N(0, I)            (Alg. 2 line 4)
                   z <- alpha z + (1 - alpha) y                                (Alg. 2 line 5)
    ``z`` must hold x on entry (Alg. 2 line 1) and holds <y> on exit. ``inner_momentum`` > 0 applies
    (Nesterov) momentum to dy, its buffer starting at zero every call. Each closure call draws a fresh
    minibatch. Returns the loss of the first call (the loss at x). ``noise_ahead=True`` (only for a
    ``generator`` nothing else uses while the loop runs) draws the thermal noise of the next step in a
    background thread while the closure runs (:class:`GaussianNoise`; identical numbers).
    """
    first = torch.tensor(float("nan"))
    momentum_state: dict = {p: {} for p in params}  # the inner buffer restarts at zero every call
    coupling = inv(gamma)
    scale = math.sqrt(2.0 * inner_lr * temperature)
    ahead = steps if noise_ahead else 0
    plain = not inner_momentum and not weight_decay
    pull = inner_lr * coupling
    folded = plain and pull and scale  # noise folded into the proximal pull: one pass fewer per step

    def fold(n: list[Tensor]) -> None:  # n <- x + (scale / pull) n, so lerp(y, n, pull) adds the noise too
        scale_shift_(n, scale / pull, x)

    noise_cm = GaussianNoise(params, generator, ahead, fold if folded else None) if scale else None
    with noise_cm or contextlib.nullcontext() as noise:
        for step in range(steps):
            loss = call_closure(closure, params, **(closure_kwargs or {}))
            if step == 0:
                first = loss.detach()
            g = grads_of(params)  # fresh tensors of this call: modified in place below
            if plain:  # y <- y + eta_y (x - y) / gamma [+ noise] - eta_y g: two passes, no allocation
                if coupling:
                    torch._foreach_lerp_(params, noise.next() if folded else x, pull)
                torch._foreach_add_(params, g, alpha=-inner_lr)
            else:
                if coupling or weight_decay:
                    torch._foreach_add_(g, params, alpha=coupling + weight_decay)
                if coupling:
                    torch._foreach_add_(g, x, alpha=-coupling)
                dy = momentum_direction(momentum_state, params, g, inner_momentum, nesterov)
                torch._foreach_add_(params, dy, alpha=-inner_lr)
            if noise is not None and not folded:
                noise.add_(scale)
            torch._foreach_lerp_(z, params, 1.0 - alpha)
    return first


class EntropySGD(SmoothingOptimizer):
    """Entropy-SGD, thesis Algorithm 2 / eqs. 4.40-4.41.

    One ``step(closure)`` calls ``closure`` L times (each call must draw a FRESH minibatch, call ``backward``
    and return the loss; grads are zeroed before every call), running the SGLD inner loop of
    :func:`local_entropy_inner_loop` from y = z = x, then restores x and takes the outer step

        x <- x - lr * (x - z)            (``scale_by_gamma=False``: the practical form of Sec. 3.2.3), or
        x <- x - lr * (x - z) / gamma    (``scale_by_gamma=True``: Alg. 2 line 6 and eq. 4.41 as written),

    with optional (Nesterov) ``momentum`` on the outer step and ``inner_momentum`` on the inner one (the
    thesis uses 0.9 in both loops). ``step`` returns the loss at x (the first closure call).

    Decisions on the thesis's inconsistencies (SPEC §4):
    * learning-rate labels: Alg. 2 calls the SGLD step eta and the outer step eta'; eqs. 4.40-4.41 call them
      eta_y and eta. Here ``inner_lr`` is the SGLD step (eta_y, thesis 0.1) and ``lr`` the outer one.
    * noise: Alg. 2 line 4 adds sqrt(2 eta / beta) N, eq. 4.40 sqrt(eta_y / beta_ex) N. We use Alg. 2's
      sqrt(2 inner_lr * temperature), the Euler-Maruyama step whose stationary law is exactly
      rho(y; x) ~ exp(-(f(y) + |x - y|^2 / (2 gamma)) / temperature); a value of beta_ex^{-1} quoted for
      eq. 4.40 corresponds to ``temperature = beta_ex^{-1} / 2``. The public reference port adds
      (eps / sqrt(eta_y / 2)) N to dy, i.e. sqrt(2 eta_y) eps N to y, which is our form with
      temperature = eps^2 (ICLR paper: eps in [1e-4, 1e-3]); the thesis's beta^{-1} in [1e-8, 1e-6] gives
      the default ``temperature = 1e-8`` (Sec. 4.6.1.1).
    * averaging: z <- alpha z + (1 - alpha) y with ``alpha = 0.25`` (thesis: more weight on late samples). The
      public code writes mu <- 0.75 mu + 0.25 y, i.e. alpha = 0.75 in this notation; pass ``alpha=0.75`` to
      match it. z starts at x (Alg. 2 line 1).
    * scope vs coupling: ``gamma`` is the scope (Gaussian width); scoping shrinks it,
      gamma_t = gamma0 (1 - scoping)^t (thesis Sec. 3.2.3; default gamma0 = 100, the
      public code's g0 = 0.01). Alternatively pass ``coupling`` = g0 = 1/gamma0
      and ``coupling_growth`` = g1: g_t = g0 (1 + g1)^t (ICLR paper / public code). t counts outer steps
      and advances on every ``step`` (the public port never advanced its counter: its scoping stayed at g0).
      gamma is clipped below at ``gamma_min`` (default ``inner_lr``, which keeps the proximal contraction
      1 - inner_lr / gamma of the inner step non-negative).
    * weight decay adds ``weight_decay * y`` to the inner gradient (the loss is f + wd |y|^2 / 2).
    * momentum in the inner loop filters the whole dy of Alg. 2 line 3 (gradient + coupling); the public port
      applies it to the minibatch gradient (and weight decay) only and adds the coupling and noise afterwards.
      Its outer step is x <- x - lr (x - z) with momentum, our ``scale_by_gamma=False`` form.
    * checkpoints: ``state_dict`` carries the outer-step counter t, so scoping resumes where it stopped.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1.0,
        L: int = 20,
        inner_lr: float = 0.1,
        gamma: float | None = None,
        scoping: float = 0.0,
        coupling: float | None = None,
        coupling_growth: float | None = None,
        gamma_min: float | None = None,
        alpha: float = 0.25,
        temperature: float = 1e-8,
        momentum: float = 0.0,
        inner_momentum: float = 0.0,
        nesterov: bool = True,
        scale_by_gamma: bool = False,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        self.L = check_int("L", L)
        self.inner_lr = check_positive("inner_lr", inner_lr)
        self.alpha = check_fraction("alpha", alpha)
        self.temperature = check_positive("temperature", temperature, allow_zero=True)
        self.inner_momentum = check_fraction("inner_momentum", inner_momentum)
        self.scale_by_gamma = bool(scale_by_gamma)
        self.weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
        defaults = self._defaults(lr=lr, momentum=momentum, nesterov=nesterov)
        super().__init__(
            params,
            defaults,
            _default_scope(gamma, coupling, 100.0),
            scoping,
            coupling,
            coupling_growth,
            self.inner_lr if gamma_min is None else gamma_min,
            generator,
            seed,
        )

    def _defaults(self, lr: float, momentum: float, nesterov: bool) -> dict:
        return dict(lr=lr, momentum=momentum, nesterov=nesterov)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = require_closure(closure, type(self).__name__)
        params = self.all_params()
        x = [p.detach().clone() for p in params]
        z = [p.detach().clone() for p in params]
        gamma = self.gamma
        loss = local_entropy_inner_loop(
            closure,
            params,
            x,
            z,
            gamma,
            self.L,
            self.inner_lr,
            self.alpha,
            self.temperature,
            self.inner_momentum,
            self.param_groups[0].get("nesterov", True),
            self.weight_decay,
            self.generator,
            noise_ahead=self.noise_ahead,
        )
        torch._foreach_copy_(params, x)
        d = torch._foreach_sub(x, z)
        if self.scale_by_gamma:
            torch._foreach_mul_(d, inv(gamma))
        self.outer_step(d)
        return loss


class EntropyAdam(AdamOuter, EntropySGD):
    """Entropy-Adam: the inner SGLD loop of :class:`EntropySGD`, and an Adam outer step on d = x - z
    (or (x - z) / gamma with ``scale_by_gamma``) — thesis Sec. 3.2.2 ("we can easily wrap Algorithm 2 inside
    other variants of SGD such as Adam"). Default outer lr 1e-3, Adam betas (0.9, 0.999), eps 1e-8."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        **kwargs: object,
    ) -> None:
        self._betas = check_betas(betas)
        self._eps = check_positive("eps", eps)
        super().__init__(params, lr=lr, **kwargs)  # type: ignore[arg-type]

    def _defaults(self, lr: float, momentum: float, nesterov: bool) -> dict:
        return dict(lr=lr, betas=self._betas, eps=self._eps, nesterov=nesterov)
