"""Probes: measurements taken during training (sharpness, norms, ...) and logged with the metrics.

A probe is any callable ``probe(ctx: ProbeContext) -> dict[str, float]`` with an attribute ``every: int``. The
trainer calls it at step 0, at every multiple of ``every`` and at the end of every phase, with the model in
eval mode (restored afterwards) and gradients enabled; it must not change the model's parameters.

In one's own training loop, :func:`measure` (also ``p.measure(model, x, y, ...)`` on probes made with
:func:`probe` and on :class:`~flatminima.SharpnessProbe`) builds the context and calls the probe the way the
trainer does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..objective import LossFn

__all__ = ["RESERVED", "Probe", "ProbeContext", "check_probes", "measure", "probe", "run_probes"]

# Names the trainer itself logs; probe outputs may not reuse them.
RESERVED = frozenset({"step", "phase", "lr", "epoch", "train_loss", "train_acc", "test_loss", "test_acc"})


@dataclass(frozen=True)
class ProbeContext:
    """What a probe sees: the live model, where training is, the full training data and the loss."""

    model: nn.Module
    step: int
    phase: int
    x: Tensor
    y: Tensor
    loss: str | LossFn
    lr: float
    batch_size: int  # examples per minibatch (n for full batch)


@runtime_checkable
class Probe(Protocol):
    every: int

    def __call__(self, ctx: ProbeContext) -> dict[str, float]: ...


def probe(every: int) -> Callable[[Callable[[ProbeContext], dict[str, float]]], Probe]:
    """Decorator turning a function into a probe: ``@probe(every=50) def norm(ctx): ...``. The probe also
    gets ``norm.measure(model, x, y, loss=..., lr=..., step=...)`` (:func:`measure`) for use in one's own
    loop."""

    def wrap(fn: Callable[[ProbeContext], dict[str, float]]) -> Probe:
        fn.every = every  # type: ignore[attr-defined]
        fn.measure = functools.partial(measure, fn)  # type: ignore[attr-defined]
        return fn  # type: ignore[return-value]

    return wrap


def measure(
    p: Callable[[ProbeContext], dict[str, float]],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str | LossFn = "mse",
    lr: float = math.nan,
    step: int = 0,
    phase: int = 0,
    batch_size: int | None = None,
) -> dict[str, float]:
    """Run probe ``p`` once on ``model`` at the data ``(x, y)``, as the trainer would at ``step``: builds the
    :class:`ProbeContext` (``loss``: a loss name or per-example callable, ``lr``: the current learning rate,
    NaN when not given, ``batch_size``: default ``len(x)``), switches the model to eval mode with gradients
    enabled (restored afterwards) and returns the outputs as floats. E.g. in a loop:
    ``if step % 50 == 0: log(sharp.measure(model, x, y, loss="cross_entropy", lr=lr, step=step))``.
    """
    if len(x) != len(y):
        raise ConfigError(f"measure: {len(x)} inputs and {len(y)} targets")
    ctx = ProbeContext(model, int(step), int(phase), x, y, loss, float(lr), int(batch_size or len(x)))
    return run_probes([p], ctx, force=True)


def check_probes(probes: Sequence[Probe]) -> list[Probe]:
    """Reject anything that is not a callable with a positive integer ``every``."""
    out = []
    for i, p in enumerate(probes):
        every = getattr(p, "every", None)
        if not callable(p) or not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError(f"probes[{i}]: a probe is a callable with an integer attribute every >= 1")
        out.append(p)
    return out


def run_probes(probes: Sequence[Probe], ctx: ProbeContext, force: bool = False) -> dict[str, float]:
    """Outputs of the probes due at ``ctx.step`` (all of them when ``force``), as floats."""
    due = [p for p in probes if force or ctx.step % p.every == 0]
    if not due:
        return {}
    values: dict[str, float] = {}
    was_training = ctx.model.training
    ctx.model.eval()
    try:
        with torch.enable_grad():
            for p in due:
                for name, value in dict(p(ctx)).items():
                    if name in RESERVED:
                        raise ConfigError(f"probe output {name!r} clashes with a metric the trainer logs")
                    if isinstance(value, Tensor):
                        value = value.detach()
                    values[str(name)] = float(value) if value is not None else math.nan
    finally:
        ctx.model.train(was_training)
    return values
