"""Shared pieces of the optimizers: argument checks, seeded Gaussian noise, scope schedules, closures."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.optim import Optimizer

from ..errors import ConfigError

Closure = Callable[..., Tensor | float]


class CountedOptimizer(Optimizer):
    """An Optimizer with a step counter ``t`` (driving noise schedules and annealing) and an optional noise
    ``generator``, both saved in ``state_dict``, so a run resumed from a checkpoint continues bit for bit.

    ``state_dict()`` adds ``"t"`` and, when the optimizer draws its noise from its own generator (``seed=`` or
    ``generator=``), ``"noise_generator": {"state": ByteTensor, "device": str}``: the generator's state after
    the draws the algorithm has consumed (:class:`GaussianNoise` gives back draws made ahead and not used).
    ``load_state_dict`` restores both; the loaded generator state wins over the instance's own seed (an
    optimizer built without a generator gets one). Noise from torch's global generator (no ``seed=``, no
    ``generator=``) is not part of the optimizer: save ``torch.get_rng_state()`` with the checkpoint.
    """

    t: int = 0
    generator: torch.Generator | None = None

    def state_dict(self) -> dict:  # type: ignore[override]
        sd = super().state_dict()
        sd["t"] = self.t
        if self.generator is not None:
            gen = self.generator
            sd["noise_generator"] = {"state": gen.get_state(), "device": str(gen.device)}
        return sd

    def load_state_dict(self, state_dict: dict) -> None:  # type: ignore[override]
        state_dict = dict(state_dict)
        self.t = int(state_dict.pop("t", 0))
        saved = state_dict.pop("noise_generator", None)
        super().load_state_dict(state_dict)
        if saved is not None:
            self._load_generator(saved)

    def _load_generator(self, saved: dict) -> None:
        try:
            state, device = saved["state"], torch.device(saved["device"])
            if self.generator is None or self.generator.device != device:
                self.generator = torch.Generator(device=device)
                if hasattr(self, "noise_ahead"):
                    self.noise_ahead = noise_ahead_possible(self.generator)  # now ours alone
            self.generator.set_state(state)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ConfigError(f"state_dict: unusable noise_generator entry ({exc})") from None

    @contextmanager
    def undo_on_error(self, params: Sequence[Tensor], saved: Sequence[Tensor]) -> Iterator[None]:
        """Make a step all-or-nothing: when the block raises (a closure that fails in the middle of an inner
        loop, Ctrl-C), ``params`` get their values ``saved`` at the start of the step back and the noise
        generator its state, so the step can be retried and continues exactly as if it never ran."""
        state = self.generator.get_state() if self.generator is not None else None
        try:
            yield
        except BaseException:
            with torch.no_grad():
                torch._foreach_copy_(list(params), list(saved))
            if state is not None:
                self.generator.set_state(state)  # type: ignore[union-attr]
            raise

    def trainable(self, group: dict) -> list[Tensor]:
        """The parameters of ``group`` that this optimizer moves: those with ``requires_grad`` (frozen ones
        are skipped, as torch's optimizers skip them)."""
        return [p for p in group["params"] if p.requires_grad]

    def active_groups(self) -> list[tuple[dict, list[Tensor]]]:
        """``(group, trainable parameters)`` for every group with at least one trainable parameter;
        ConfigError when there is none (an all-frozen model)."""
        out = [(g, ps) for g in self.param_groups if (ps := self.trainable(g))]
        if not out:
            name = type(self).__name__
            raise ConfigError(f"{name}: every parameter has requires_grad=False; there is nothing to train")
        return out

    def shared(self, key: str) -> Any:
        """The value of ``key`` in every param group; ConfigError when the groups disagree (e.g. ``L``: the
        closure evaluates the whole model, so every group takes the same number of inner steps)."""
        values = {repr(g[key]): g[key] for g in self.param_groups}
        if len(values) != 1:
            raise ConfigError(f"{key} must be the same in every param group, got {sorted(values)}")
        return next(iter(values.values()))


def group_value(key: str) -> property:
    """A read-only attribute holding ``param_groups[0][key]`` (the first group's hyper-parameter, kept as an
    attribute for convenience; change it in ``param_groups``, where schedules and per-group values live)."""
    return property(lambda self: self.param_groups[0][key], doc=f"``param_groups[0][{key!r}]``.")


def check_positive(name: str, value: float, allow_zero: bool = False, allow_inf: bool = False) -> float:
    """Return ``float(value)`` or raise ConfigError if it is not a (non-negative) finite number."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if math.isnan(v) or (math.isinf(v) and not allow_inf) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound}{' (inf allowed)' if allow_inf else ''}, got {value!r}")
    return v


def check_fraction(name: str, value: float, upper_inclusive: bool = False) -> float:
    """Return ``value`` if it lies in [0, 1) (or [0, 1]); raise ConfigError otherwise."""
    v = float(value)
    if not (0.0 <= v < 1.0 or (upper_inclusive and v == 1.0)):
        raise ConfigError(f"{name} must lie in [0, 1{']' if upper_inclusive else ')'}, got {value!r}")
    return v


def check_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``minimum``; raise ConfigError otherwise."""
    if isinstance(value, bool) or int(value) != value or int(value) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    """The generator used for an optimizer's noise: ``generator`` if given, else one seeded with ``seed``.

    With neither, noise comes from torch's global generator (seed it with
    ``flatminima._seed.seed_everything``).
    """
    if generator is not None and seed is not None:
        raise ConfigError("pass either generator= or seed=, not both")
    if seed is not None:
        return torch.Generator().manual_seed(int(seed))
    return generator


def gaussian_like(t: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gaussian noise shaped like ``t``, drawn from ``generator`` (on its device), moved to ``t``."""
    device = generator.device if generator is not None else t.device
    out = torch.randn(t.shape, generator=generator, device=device, dtype=t.dtype)
    return out.to(t.device)


_WORKER: tuple[int, ThreadPoolExecutor] | None = None


def _noise_worker() -> ThreadPoolExecutor:
    """The process's background thread for drawing noise ahead (created lazily; recreated after a fork)."""
    global _WORKER
    if _WORKER is None or _WORKER[0] != os.getpid():
        _WORKER = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="flatminima-noise"))
    return _WORKER[1]


def noise_ahead_possible(generator: torch.Generator | None) -> bool:
    """Whether noise may be drawn ahead in a background thread: a CPU ``generator`` that nothing else uses
    (the caller's promise; an optimizer's own ``seed=`` generator), more than one core, and
    ``FLATMINIMA_NOISE_THREAD`` not set to ``0``."""
    return (
        generator is not None
        and generator.device.type == "cpu"
        and (os.cpu_count() or 1) > 1
        and os.environ.get("FLATMINIMA_NOISE_THREAD", "1") != "0"
    )


class GaussianNoise:
    """Draws ``N(0, I)`` shaped like a fixed list of tensors (:meth:`next`) or adds ``scale`` times it to
    them (:meth:`add_`), drawing all entries with one ``normal_`` call into a preallocated flat buffer (one
    kernel launch and no allocation per step). Falls back to one draw per tensor when the tensors differ in
    dtype/device or the generator lives on another device. ``then(noise)``, if given, post-processes every
    draw in place (e.g. scale and shift it) before it is handed out.

    ``ahead=k`` (k > 1, CPU tensors, a generator for this object's exclusive use): the k draws of a loop
    (with ``then``) are made in a background thread one step ahead, into two alternating buffers, so that
    drawing the next noise overlaps the caller's gradient computation instead of following it. The draws
    are the same ``normal_`` calls on the same generator in the same order, so the numbers (and the
    generator's state afterwards) are bit-identical to drawing synchronously. Use as a context manager (or
    call :meth:`close`) so that a loop that stops early waits for the draw in flight and gives it back:
    :meth:`close` resets the generator to its state before that unused draw, so the generator always holds
    exactly the draws handed out (what an optimizer's ``state_dict`` saves for an exact resume).
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        generator: torch.Generator | None,
        ahead: int = 0,
        then: Callable[[list[Tensor]], object] | None = None,
    ) -> None:
        self.tensors = list(tensors)
        self.generator = generator
        self.then = then
        first = self.tensors[0]
        same = all(t.dtype == first.dtype and t.device == first.device for t in self.tensors)
        on_device = generator is None or generator.device == first.device
        self.views: list[Tensor] | None = None
        self._future: Future | None = None
        self._left = 0
        self._rewind: Tensor | None = None
        if same and on_device:
            sizes = [t.numel() for t in self.tensors]
            self.flat = torch.empty(sum(sizes), dtype=first.dtype, device=first.device)
            self.views = [v.view_as(t) for v, t in zip(self.flat.split(sizes), self.tensors, strict=True)]
            if ahead > 1 and first.device.type == "cpu" and noise_ahead_possible(generator):
                spare = torch.empty_like(self.flat)
                self._buffers = [(self.flat, self.views), (spare, [v.view_as(t) for v, t in
                                 zip(spare.split(sizes), self.tensors, strict=True)])]  # fmt: skip
                self._left = ahead
                self._submit()

    def _fill(self, flat: Tensor, views: list[Tensor]) -> None:
        flat.normal_(generator=self.generator)
        if self.then is not None:
            self.then(views)

    def _fill_ahead(self, flat: Tensor, views: list[Tensor]) -> None:
        """:meth:`_fill` in the noise thread, remembering the generator state before the draw."""
        self._rewind = self.generator.get_state()  # type: ignore[union-attr]
        self._fill(flat, views)

    def _submit(self) -> None:
        """Start the next announced draw into the buffer not being read; swap the two."""
        self._buffers.reverse()
        if self._left:
            self._left -= 1
            self._future = _noise_worker().submit(self._fill_ahead, *self._buffers[0])

    def next(self) -> list[Tensor]:
        """The next draw (after ``then``), shaped like the tensors; valid until the following call."""
        if self._future is not None:
            self._future.result()
            self._future = None
            views = self._buffers[0][1]
            self._submit()  # the following draw goes into the other buffer while this one is used
            return views
        if self.views is None:
            noise = [gaussian_like(t, self.generator) for t in self.tensors]
            if self.then is not None:
                self.then(noise)
            return noise
        self._fill(self.flat, self.views)
        return self.views

    def add_(self, scale: float) -> None:
        """tensors += scale * (next draw); nothing is drawn when ``scale == 0``."""
        if scale != 0.0:
            torch._foreach_add_(self.tensors, self.next(), alpha=scale)

    def close(self) -> None:
        """After a loop that stopped before its last step: wait for the draw made ahead, then give it back
        (reset the generator to its state before that draw, which was never handed out)."""
        if self._future is not None:
            self._future.result()
            self._future = None
            self._left = 0
            if self._rewind is not None:
                self.generator.set_state(self._rewind)  # type: ignore[union-attr]

    def __enter__(self) -> GaussianNoise:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def scale_shift_(n: Sequence[Tensor], k: float, x: Sequence[Tensor]) -> None:
    """In place n <- k n + x, tensor by tensor, without torch's intra-op thread pool: float32/64 CPU tensors
    go through numpy (serial, GIL released), so it may run in the noise thread without starting a second
    OpenMP team that would compete with the caller's; other tensors use torch ops."""
    for ni, xi in zip(n, x, strict=True):
        if ni.device.type == "cpu" and ni.dtype in (torch.float32, torch.float64) and xi.dtype == ni.dtype:
            a = ni.detach().numpy()
            np.multiply(a, k, out=a)
            np.add(a, xi.detach().numpy(), out=a)
        else:
            ni.mul_(k).add_(xi)


def add_noise_(tensors: Sequence[Tensor], scale: float, generator: torch.Generator | None) -> None:
    """In place ``t += scale * N(0, I)`` for every tensor (no-op for ``scale == 0``)."""
    if scale != 0.0:
        GaussianNoise(tensors, generator).add_(scale)


def scope_schedule(
    gamma: float | None, scoping: float, coupling: float | None, coupling_growth: float | None
) -> tuple[float, float]:
    """Resolve the two parameterizations of scoping to ``(gamma0, scoping)``: gamma_{t+1} = gamma_t (1 -
    scoping).

    Scope (thesis Sec. 3.2.3): gamma_t = gamma0 (1 - gamma1)^t, gamma shrinks (``gamma``,
    ``scoping`` = gamma1).
    Coupling (ICLR paper / public code): g_t = g0 (1 + g1)^t grows, gamma_t = 1 / g_t (``coupling`` = g0,
    ``coupling_growth`` = g1). The two agree when 1 - gamma1 = 1 / (1 + g1), so the coupling form is stored as
    gamma0 = 1 / g0 and scoping = g1 / (1 + g1).
    """
    if coupling is not None:
        if gamma is not None:
            raise ConfigError("pass either gamma= (scope) or coupling= (1/gamma), not both")
        g0 = check_positive("coupling", coupling, allow_zero=True)
        g1 = check_positive("coupling_growth", coupling_growth or 0.0, allow_zero=True)
        if scoping:
            raise ConfigError("scoping= goes with gamma=; with coupling= use coupling_growth=")
        return (math.inf if g0 == 0 else 1.0 / g0), 1.0 - 1.0 / (1.0 + g1)
    if coupling_growth:
        raise ConfigError("coupling_growth= needs coupling=; with gamma= use scoping=")
    gamma0 = check_positive("gamma", 1.0 if gamma is None else gamma, allow_inf=True)
    return gamma0, check_fraction("scoping", scoping)


def scoped(group: dict, key: str = "gamma") -> float:
    """The scope of a param group this step: ``max(group[key], group[key + "_min"])`` (inf stays inf)."""
    return max(float(group[key]), float(group[f"{key}_min"]))


def advance_scope(groups: Iterable[dict], keys: Sequence[str] = ("gamma",)) -> None:
    """After an outer step: group[key] <- max(group[key] (1 - group["scoping"]), group[key + "_min"]) for
    every group and key (thesis Sec. 3.2.3 and eq. 5.10, written as a per-step update so that a schedule may
    also change the value in the group, as torch's schedulers change ``lr``)."""
    for group in groups:
        for key in keys:
            group[key] = max(float(group[key]) * (1.0 - float(group["scoping"])), float(group[f"{key}_min"]))


def inv(value: float) -> float:
    """1 / value with 1 / inf = 0 (an infinite scope or coupling radius switches the term off)."""
    return 0.0 if math.isinf(value) else 1.0 / value


def grads_of(params: Iterable[Tensor]) -> list[Tensor]:
    """The ``.grad`` of each parameter (zeros where a parameter got no gradient)."""
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def zero_grads(params: Iterable[Tensor]) -> None:
    """Set ``.grad = None`` so a closure that forgets ``zero_grad`` still yields a fresh gradient."""
    for p in params:
        p.grad = None


def call_closure(closure: Closure, params: Sequence[Tensor], **kwargs: object) -> Tensor:
    """Zero the grads, evaluate ``closure`` with grad enabled (it must call ``backward``), return the loss.

    ConfigError when the closure left no gradient on any of ``params`` (it forgot ``loss.backward()``, or
    the loss does not depend on the trainable parameters): a step on no gradient would be silent nonsense.
    """
    zero_grads(params)
    with torch.enable_grad():
        loss = closure(**kwargs) if kwargs else closure()
    check_gradients(params)
    return loss if isinstance(loss, Tensor) else torch.tensor(float(loss))


def check_gradients(params: Iterable[Tensor]) -> None:
    """ConfigError unless at least one of ``params`` has a ``.grad`` (see :func:`call_closure`)."""
    if all(p.grad is None for p in params):
        raise ConfigError(
            "the closure produced no gradient: it must compute the loss from the model, call "
            "loss.backward() and return the loss (no parameter has a .grad after the call)"
        )


def accepts_keyword(fn: Callable[..., object], name: str) -> bool:
    """Whether ``fn`` takes the keyword argument ``name`` (or ``**kwargs``)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def require_closure(closure: Closure | None, name: str) -> Closure:
    """Raise ConfigError when an optimizer that evaluates several gradients per step got no closure."""
    if closure is None:
        raise ConfigError(
            f"{name}.step needs a closure that draws a fresh minibatch, calls backward and returns the loss"
        )
    return closure


def momentum_direction(
    state: dict,
    params: Sequence[Tensor],
    d: list[Tensor],
    mu: float,
    nesterov: bool,
    key: str = "momentum_buffer",
) -> list[Tensor]:
    """Heavy-ball / Nesterov direction (PyTorch's SGD convention): buf <- mu buf + d; returns d + mu buf
    (Nesterov) or buf. Buffers (shaped like d) live in ``state[p][key]``; ``mu = 0`` returns ``d``."""
    if not mu:
        return d
    bufs = []
    for p, di in zip(params, d, strict=True):
        st = state[p]
        if key not in st:
            st[key] = torch.zeros_like(di)
        bufs.append(st[key])
    torch._foreach_mul_(bufs, mu)
    torch._foreach_add_(bufs, d)
    return torch._foreach_add(d, bufs, alpha=mu) if nesterov else bufs
