"""Entropy-SGD and Entropy-Adam (Chaudhari's thesis, Algorithm 2, Sec. 3.2; eqs. 4.40-4.41).

Local entropy f_gamma(x) = -log int exp(-f(y) - |x - y|^2 / (2 gamma)) dy has gradient
grad f_gamma(x) = gamma^{-1} (x - <y>), <y> the mean of rho(y; x) ~ exp(-beta (f(y) + |x - y|^2 / (2 gamma)))
(thesis Ch. 3). Entropy-SGD estimates <y> with L steps of SGLD and steps along x - <y>.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

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
    group_value,
    inv,
    momentum_direction,
    require_closure,
    scale_shift_,
    scoped,
)
from ._outer import AdamOuter, SmoothingOptimizer, check_betas

__all__ = ["EntropyAdam", "EntropySGD", "InnerGroup", "inner_loop", "local_entropy_inner_loop"]


def _default_scope(gamma: float | None, coupling: float | None, default: float) -> float | None:
    """``gamma`` if given, else ``default`` unless the coupling parameterization is used."""
    return default if gamma is None and coupling is None else gamma


@dataclass
class InnerGroup:
    """One param group's share of the inner loop: the group's trainable ``params`` (= y), the anchor ``x``
    and the average ``z`` (both shaped like ``params``), and its hyper-parameters for this step."""

    params: list[Tensor]
    x: list[Tensor]
    z: list[Tensor]
    gamma: float
    inner_lr: float
    alpha: float
    temperature: float
    inner_momentum: float = 0.0
    nesterov: bool = True
    weight_decay: float = 0.0

    coupling: float = field(init=False)
    scale: float = field(init=False)
    plain: bool = field(init=False)
    folded: bool = field(init=False)  # noise folded into the proximal pull: one pass fewer per step

    @classmethod
    def of(cls, group: dict, params: list[Tensor], x: list[Tensor], z: list[Tensor]) -> InnerGroup:
        """The inner-loop settings of a param ``group`` this step (its values checked: a schedule or user
        code may have changed them)."""
        return cls(
            params,
            x,
            z,
            scoped(group),
            check_positive("inner_lr", group["inner_lr"]),
            check_fraction("alpha", group["alpha"]),
            check_positive("temperature", group["temperature"], allow_zero=True),
            check_fraction("inner_momentum", group["inner_momentum"]),
            bool(group["nesterov"]),
            check_positive("weight_decay", group["weight_decay"], allow_zero=True),
        )

    def __post_init__(self) -> None:
        self.coupling = inv(self.gamma)
        self.scale = math.sqrt(2.0 * self.inner_lr * self.temperature)
        self.plain = not self.inner_momentum and not self.weight_decay
        self.folded = bool(self.plain and self.inner_lr * self.coupling and self.scale)


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
    background thread while the closure runs (:class:`GaussianNoise`; identical numbers). One set of
    hyper-parameters for all ``params``; :func:`inner_loop` takes one per param group.
    """
    group = InnerGroup(
        params, x, z, gamma, inner_lr, alpha, temperature, inner_momentum, nesterov, weight_decay
    )
    return inner_loop(closure, [group], steps, generator, closure_kwargs, noise_ahead)


@torch.no_grad()
def inner_loop(
    closure: Closure,
    groups: list[InnerGroup],
    steps: int,
    generator: torch.Generator | None = None,
    closure_kwargs: dict | None = None,
    noise_ahead: bool = False,
) -> Tensor:
    """:func:`local_entropy_inner_loop` with per-group hyper-parameters: every closure call evaluates the
    gradient of all groups' parameters at once, then each group takes its own SGLD step. The thermal noise
    of all groups comes from one draw per step (one ``normal_`` over the groups with noise, in order)."""
    first = torch.tensor(float("nan"))
    params = [p for g in groups for p in g.params]
    momentum_state: dict = {p: {} for p in params}  # the inner buffer restarts at zero every call
    noisy = [g for g in groups if g.scale]
    folded = [g.folded for g in noisy]
    bounds = [0]
    for g in noisy:
        bounds.append(bounds[-1] + len(g.params))

    def fold(n: list[Tensor]) -> None:  # n <- x + (scale / pull) n, so lerp(y, n, pull) adds the noise too
        for g, f, lo, hi in zip(noisy, folded, bounds, bounds[1:], strict=False):
            if f:
                scale_shift_(n[lo:hi], g.scale / (g.inner_lr * g.coupling), g.x)

    tensors = [p for g in noisy for p in g.params]
    noise_cm = (
        GaussianNoise(tensors, generator, steps if noise_ahead else 0, fold if any(folded) else None)
        if tensors
        else None
    )
    with noise_cm or contextlib.nullcontext() as noise:
        for step in range(steps):
            loss = call_closure(closure, params, **(closure_kwargs or {}))
            if step == 0:
                first = loss.detach()
            draw = noise.next() if noise is not None else []
            k = 0
            for g in groups:
                n = None
                if g.scale:
                    n = draw[bounds[k] : bounds[k + 1]]
                    k += 1
                _inner_step(g, n, momentum_state)
    return first


def _inner_step(g: InnerGroup, n: list[Tensor] | None, momentum_state: dict) -> None:
    """One SGLD step of one group (Alg. 2 lines 3-5); ``n``: its noise draw (folded if ``g.folded``)."""
    params, x, coupling = g.params, g.x, g.coupling
    grads = grads_of(params)  # fresh tensors of this call: modified in place below
    if g.plain:  # y <- y + eta_y (x - y) / gamma [+ noise] - eta_y g: two passes, no allocation
        if coupling:
            torch._foreach_lerp_(params, n if g.folded else x, g.inner_lr * coupling)  # type: ignore[arg-type]
        torch._foreach_add_(params, grads, alpha=-g.inner_lr)
    else:
        if coupling or g.weight_decay:
            torch._foreach_add_(grads, params, alpha=coupling + g.weight_decay)
        if coupling:
            torch._foreach_add_(grads, x, alpha=-coupling)
        dy = momentum_direction(momentum_state, params, grads, g.inner_momentum, g.nesterov)
        torch._foreach_add_(params, dy, alpha=-g.inner_lr)
    if n is not None and not g.folded:
        torch._foreach_add_(params, n, alpha=g.scale)
    torch._foreach_lerp_(g.z, params, 1.0 - g.alpha)


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
    * hyper-parameters live in ``param_groups`` (PyTorch's convention: per-group values, reachable by
      schedules and by code that edits ``group["temperature"]``): ``lr``, ``momentum``, ``nesterov``, ``L``,
      ``inner_lr``, ``gamma`` (the current scope; scoping updates it after every step), ``gamma_min``,
      ``scoping``, ``alpha``, ``temperature``, ``inner_momentum``, ``scale_by_gamma``, ``weight_decay``. ``L``
      must agree across groups (one closure call evaluates all of them). The attributes ``opt.L``,
      ``opt.gamma``, ... read the first group.
    * parameters with ``requires_grad=False`` are not moved (no pull, no noise, no outer step), as in torch's
      optimizers; a trainable parameter that got no gradient in a closure call has zero gradient there (its
      loss does not depend on it), and a closure that left no gradient at all is a ConfigError.
    * checkpoints: ``state_dict`` carries the outer-step counter t, the scopes (in the param groups) and the
      noise generator's state, so a resumed run continues bit for bit.
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
        inner_lr = check_positive("inner_lr", inner_lr)
        defaults = dict(
            self._defaults(lr=lr, momentum=momentum, nesterov=nesterov),
            L=check_int("L", L),
            inner_lr=inner_lr,
            alpha=check_fraction("alpha", alpha),
            temperature=check_positive("temperature", temperature, allow_zero=True),
            inner_momentum=check_fraction("inner_momentum", inner_momentum),
            scale_by_gamma=bool(scale_by_gamma),
            weight_decay=check_positive("weight_decay", weight_decay, allow_zero=True),
        )
        super().__init__(
            params,
            defaults,
            _default_scope(gamma, coupling, 100.0),
            scoping,
            coupling,
            coupling_growth,
            inner_lr if gamma_min is None else gamma_min,
            generator,
            seed,
        )

    L = group_value("L")
    inner_lr = group_value("inner_lr")
    alpha = group_value("alpha")
    temperature = group_value("temperature")
    inner_momentum = group_value("inner_momentum")
    scale_by_gamma = group_value("scale_by_gamma")
    weight_decay = group_value("weight_decay")

    def _defaults(self, lr: float, momentum: float, nesterov: bool) -> dict:
        return dict(lr=lr, momentum=momentum, nesterov=nesterov)

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = require_closure(closure, type(self).__name__)
        active = self.active_groups()
        groups = [
            InnerGroup.of(group, ps, [p.detach().clone() for p in ps], [p.detach().clone() for p in ps])
            for group, ps in active
        ]
        steps = check_int("L", self.shared("L"))
        with self.undo_on_error([p for g in groups for p in g.params], [t for g in groups for t in g.x]):
            loss = inner_loop(closure, groups, steps, self.generator, noise_ahead=self.noise_ahead)
        directions = []
        for (group, _), g in zip(active, groups, strict=True):
            torch._foreach_copy_(g.params, g.x)
            d = torch._foreach_sub(g.x, g.z)
            if group["scale_by_gamma"]:
                torch._foreach_mul_(d, inv(g.gamma))
            directions.append(d)
        self.outer_step(active, directions)
        return loss


class EntropyAdam(AdamOuter, EntropySGD):
    """Entropy-Adam: the inner SGLD loop of :class:`EntropySGD`, and an Adam outer step on d = x - z
    (or (x - z) / gamma with ``scale_by_gamma``) — thesis Sec. 3.2.2 ("we can easily wrap Algorithm 2 inside
    other variants of SGD such as Adam"). Default outer lr 1e-3, Adam betas (0.9, 0.999), eps 1e-8 (in the
    param groups, with the Entropy-SGD ones)."""

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
