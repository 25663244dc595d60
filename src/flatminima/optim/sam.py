"""Sharpness-aware minimisation: SAM (Foret, Kleiner, Mobahi & Neyshabur 2021, ICLR, Sec. 3, eq. 2 and Alg. 1)
and ASAM (Kwon, Kim, Park & Choi 2021, ICML, Sec. 3-4, eq. 9).

One step on a minibatch B with loss L_B (p = 2):

    g      = grad L_B(w)
    e_hat  = rho T^2 g / ||T g||_2        SAM: T = I (e_hat = rho g / ||g||, Foret et al. eq. 2);
                                          ASAM: T = diag(|w|) + eta (Kwon et al. eq. 9, normalisation
                                          operator T_w with offset eta, default 0 here)
    g_SAM  = grad L_B(w + e_hat)
    w     <- w - lr d,  d = g_SAM + weight_decay w, with (Nesterov) momentum on d as torch.optim.SGD

||T g|| is taken over all parameters of all groups (one perturbation of the whole network); rho, eta and
adaptive may differ per group. m-sharpness (Foret et al. Sec. 4.1): with ``m`` set, the minibatch is cut into
disjoint chunks of m examples, each chunk gets its own perturbation e_k from its own gradient, and
g_SAM = sum_k (|chunk k| / |B|) grad L_k(w + e_k) (what data-parallel SAM does with m examples per device).

Closure protocol (like ``torch.optim.LBFGS``: ``step(closure)``; grads are zeroed before every call):

* ``closure()`` must evaluate the SAME minibatch at every call of one step, call ``backward`` and return the
  loss (``closure_same_batch = True``; ``fm.train`` honours it). It is called twice per step (2 x m-chunks
  times with ``m``).
* If it accepts a keyword ``perturbed``, the second call (at w + e_hat) is ``closure(perturbed=True)``: the
  closure should then leave BatchNorm running statistics alone, so they are updated once per step, at w, as
  the users of the public ports asked (``davda54/sam`` issues; its README's ``disable_running_stats``).
  :class:`BatchClosure` does this for you.
* With ``m``: the closure must accept ``chunk`` (a ``slice`` of the minibatch) and carry the minibatch size in
  an attribute ``batch_size``; :class:`BatchClosure` does. Each chunk's unperturbed pass updates the running
  statistics (as m examples per device would); the perturbed passes never do.

Hyper-parameters live in ``param_groups`` (lr schedulers reach them); momentum buffers in ``state``, so
``state_dict()`` / ``load_state_dict()`` resume exactly. Parameters with ``requires_grad=False`` are skipped.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..errors import ConfigError
from ._common import (
    Closure,
    accepts_keyword,
    call_closure,
    check_fraction,
    check_positive,
    grads_of,
    momentum_direction,
    require_closure,
)

__all__ = ["ASAM", "SAM", "BatchClosure", "frozen_running_stats"]


@contextlib.contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Inside the block, forward passes in train mode leave the running statistics of every BatchNorm-like
    layer (``running_mean``, ``running_var``, ``num_batches_tracked``) as they were: they are copied on entry
    and restored on exit (exact also for ``momentum=None``, the cumulative average)."""
    saved: list[tuple[Tensor, Tensor]] = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                buf = getattr(module, name, None)
                if isinstance(buf, Tensor):
                    saved.append((buf, buf.detach().clone()))
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, copy in saved:
                buf.copy_(copy)


class BatchClosure:
    """The SAM closure for one minibatch ``(x, y)``: ``closure(chunk=None, perturbed=False)`` evaluates
    ``loss_fn(model(x[chunk]), y[chunk]).mean()``, calls ``backward`` and returns the loss; with
    ``perturbed=True`` BatchNorm running statistics are left untouched (:func:`frozen_running_stats`).
    ``loss_fn`` returns per-example losses or their mean. ``batch_size`` = len(x) (for m-sharpness)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, y: Tensor):
        self.model, self.loss_fn, self.x, self.y = model, loss_fn, x, y
        self.batch_size = len(x)

    def __call__(self, chunk: slice | None = None, perturbed: bool = False) -> Tensor:
        x, y = (self.x, self.y) if chunk is None else (self.x[chunk], self.y[chunk])
        with frozen_running_stats(self.model) if perturbed else contextlib.nullcontext():
            loss = self.loss_fn(self.model(x), y).mean()
            loss.backward()
        return loss.detach()


class SAM(Optimizer):
    """SAM / ASAM with an SGD base step (module docstring for the equations and the closure protocol).

    ``lr``: the SGD step; ``rho``: the perturbation radius (Foret et al.: 0.05); ``momentum``, ``nesterov``,
    ``weight_decay``: the base step as ``torch.optim.SGD``; ``adaptive``: ASAM's T = diag(|w|) + ``eta``;
    ``m``: examples per m-sharpness chunk (None: the whole minibatch, one perturbation).
    """

    needs_closure = True
    closure_same_batch = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        rho: float = 0.05,
        momentum: float = 0.0,
        adaptive: bool = False,
        eta: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        m: int | None = None,
    ) -> None:
        check_positive("lr", lr)
        check_positive("rho", rho, allow_zero=True)
        check_fraction("momentum", momentum)
        check_positive("eta", eta, allow_zero=True)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        if nesterov and not momentum:
            raise ConfigError("nesterov=True needs momentum > 0")
        _check_m(m)
        defaults = dict(
            lr=lr, rho=rho, momentum=momentum, adaptive=bool(adaptive), eta=eta, weight_decay=weight_decay,
            nesterov=bool(nesterov), m=m,
        )  # fmt: skip
        super().__init__(params, defaults)

    def _active(self) -> list[tuple[dict[str, Any], list[Tensor]]]:
        return [(g, [p for p in g["params"] if p.requires_grad]) for g in self.param_groups]

    def _chunks(self, closure: Closure) -> list[slice | None]:
        sizes = {g["m"] for g in self.param_groups}
        if len(sizes) > 1:
            raise ConfigError(
                f"all parameter groups must share m (one chunking per step), got {sorted(sizes)}"
            )
        m = _check_m(sizes.pop())
        if m is None:
            return [None]
        size = getattr(closure, "batch_size", None)
        if not isinstance(size, int) or not accepts_keyword(closure, "chunk"):
            raise ConfigError(
                "m-sharpness needs a closure taking chunk= (a slice of the minibatch) with an int attribute "
                "batch_size: use flatminima.optim.BatchClosure"
            )
        return [slice(a, min(a + m, size)) for a in range(0, size, m)]

    def _perturbation(self, groups: list[tuple[dict[str, Any], list[Tensor]]]) -> list[list[Tensor]]:
        """e_hat = rho T^2 g / ||T g|| per parameter (zeros if g = 0), from the current ``.grad``."""
        scaled, grads = [], []
        for g, params in groups:
            gs = grads_of(params)
            grads.append(gs)
            if g["adaptive"]:
                scaled.append([(p.abs() + g["eta"]) * gi for p, gi in zip(params, gs, strict=True)])
            else:
                scaled.append(gs)
        norm = torch.sqrt(sum(((t * t).sum() for ts in scaled for t in ts), torch.tensor(0.0)))
        out = []
        for (g, params), ts in zip(groups, scaled, strict=True):
            if float(norm) == 0.0:
                out.append([torch.zeros_like(p) for p in params])
            elif g["adaptive"]:  # rho T (T g) / ||T g||
                out.append(
                    [(p.abs() + g["eta"]) * t * (g["rho"] / norm) for p, t in zip(params, ts, strict=True)]
                )
            else:
                out.append([t * (g["rho"] / norm) for t in ts])
        return out

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One SAM step; returns the minibatch loss at w (before the step). ``closure`` is required."""
        closure = require_closure(closure, type(self).__name__)
        groups = self._active()
        params = [p for _, ps in groups for p in ps]
        chunks = self._chunks(closure)
        flag = {"perturbed": True} if accepts_keyword(closure, "perturbed") else {}
        total = [torch.zeros_like(p) for p in params]
        loss_sum = torch.zeros(())
        for chunk in chunks:
            weight = 1.0 if chunk is None else (chunk.stop - chunk.start) / closure.batch_size
            where = {} if chunk is None else {"chunk": chunk}
            loss = call_closure(closure, params, **where)
            loss_sum = loss_sum + weight * loss.detach().to(loss_sum.dtype)
            eps = [e for es in self._perturbation(groups) for e in es]
            saved = [p.detach().clone() for p in params]
            torch._foreach_add_(params, eps)
            call_closure(closure, params, **where, **flag)
            torch._foreach_add_(total, grads_of(params), alpha=weight)
            for p, w in zip(params, saved, strict=True):
                p.copy_(w)
        start = 0
        for g, ps in groups:
            d = total[start : start + len(ps)]
            start += len(ps)
            for p, di in zip(ps, d, strict=True):
                p.grad = di.clone()  # the SAM gradient (for logging / clipping)
            if g["weight_decay"]:
                d = torch._foreach_add(d, ps, alpha=g["weight_decay"])
            d = momentum_direction(self.state, ps, d, g["momentum"], g["nesterov"])
            torch._foreach_add_(ps, d, alpha=-g["lr"])
        return loss_sum


class ASAM(SAM):
    """ASAM (Kwon et al. 2021): :class:`SAM` with ``adaptive=True``, T = diag(|w|) + ``eta``. Default
    ``rho=0.5``, the radius Kwon et al. use for ASAM on CIFAR-10 (a ball in relative units, where SAM's rho is
    absolute)."""

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        rho: float = 0.5,
        momentum: float = 0.0,
        eta: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        m: int | None = None,
        adaptive: bool = True,
    ) -> None:
        if not adaptive:
            raise ConfigError("ASAM is SAM with adaptive=True; use SAM for the non-adaptive version")
        super().__init__(params, lr, rho, momentum, True, eta, weight_decay, nesterov, m)


def _check_m(m: Any) -> int | None:
    if m is None:
        return None
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ConfigError(f"m must be a positive integer (examples per chunk) or None, got {m!r}")
    return m
