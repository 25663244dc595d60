"""The simple gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish, Kaplan, Amodei & OpenAI Dota
Team 2018, "An empirical model of large-batch training", eq. 2.8 and App. A.1), from per-example gradients.

Sigma is the covariance of the per-example gradient g_i over the data distribution and G = E g_i the true
gradient. From m per-example gradients (sum S = sum_i g_i, sum of squares Q = sum_i |g_i|^2) the estimator is
the ratio of the unbiased estimates of numerator and denominator, McCandlish et al.'s App. A.1 construction
with B_small = 1 and B_big = m:

    tr(Sigma)^ = (Q - |S|^2 / m) / (m - 1)            (the unbiased sample covariance's trace)
    |G|^2^     = |S / m|^2 - tr(Sigma)^ / m           (unbiased: E |g_bar|^2 = |G|^2 + tr(Sigma) / m)
    B_simple^  = tr(Sigma)^ / |G|^2^

for examples drawn i.i.d. (with replacement) from the distribution; a ratio of unbiased estimates, consistent
but not itself unbiased. Standard errors: the delete-one jackknife over examples,
se = sqrt((m - 1) / m sum_j (B_(j) - B_(.))^2), where B_(j) leaves example j out. It needs only S, the |g_i|^2
and the inner products g_j . S (|S - g_j|^2 = |S|^2 - 2 g_j . S + |g_j|^2), so it costs O(m p), no resampling
and no m x m Gram matrix, and is deterministic.

When the noise swamps the signal |G|^2^ can be <= 0 (the data cannot tell G from 0): B_simple is then +inf
and ``extra["signal_resolved"]`` is False; a jackknife replicate with |G|^2^ <= 0 makes the standard error
inf.
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimate import Estimate
from ..objective import Objective
from .gradients import per_example_gradients, pick_examples

__all__ = ["noise_scale", "noise_scale_from_gradients"]


def _ratio(trace: Tensor, signal: Tensor) -> Tensor:
    return torch.where(signal > 0, trace / signal.clamp_min(1e-300), torch.full_like(trace, math.inf))


def _jackknife_se(replicates: Tensor) -> float:
    if not bool(torch.isfinite(replicates).all()):
        return math.inf
    m = replicates.numel()
    return float(((m - 1) / m * ((replicates - replicates.mean()) ** 2).sum()).sqrt())


def noise_scale_from_gradients(grads: Tensor) -> Estimate:
    """B_simple, tr(Sigma) and |G|^2 from per-example gradients ``grads`` ``[m, p]`` (module docstring).

    ``value`` = B_simple, ``stderr`` its jackknife standard error; ``extra``: ``trace_sigma`` and
    ``grad_norm_sq`` (the unbiased estimates) with their jackknife ``*_stderr``, ``biased`` (the plug-in
    tr(Sigma) / |g_bar|^2 with the 1/m covariance, for comparison), ``examples``, ``signal_resolved``.
    """
    if grads.dim() != 2:
        raise ConfigError(f"per-example gradients must be [m, p], got shape {tuple(grads.shape)}")
    m = grads.shape[0]
    if m < 3:
        raise ConfigError(f"the noise scale needs at least 3 examples (jackknife), got {m}")
    g = grads.detach().to(torch.float64)
    s = g.sum(0)
    sq = (g * g).sum(1)  # |g_i|^2
    dots = g @ s  # g_i . S
    q, s2 = sq.sum(), s @ s

    def estimates(q: Tensor, s2: Tensor, k: int) -> tuple[Tensor, Tensor]:
        trace = (q - s2 / k) / (k - 1)
        return trace, s2 / k**2 - trace / k

    trace, signal = estimates(q, s2, m)
    value = float(_ratio(trace, signal))
    t_j, g_j = estimates(q - sq, s2 - 2 * dots + sq, m - 1)  # leave example j out
    b_j = _ratio(t_j, g_j)
    plug_in_trace = (q - s2 / m) / m
    return Estimate(
        value=value,
        stderr=_jackknife_se(b_j) if math.isfinite(value) else math.nan,
        extra={
            "trace_sigma": float(trace),
            "trace_sigma_stderr": _jackknife_se(t_j),
            "grad_norm_sq": float(signal),
            "grad_norm_sq_stderr": _jackknife_se(g_j),
            "biased": float(plug_in_trace / (s2 / m**2)) if float(s2) > 0 else math.inf,
            "examples": m,
            "signal_resolved": bool(signal > 0),
            "estimator": "ratio of unbiased estimates (McCandlish et al. 2018, App. A.1); jackknife s.e.",
        },
    )


def noise_scale(
    obj: Objective, examples: int | None = None, seed: int = 0, chunk_size: int | None = None
) -> Estimate:
    """B_simple of the objective's loss at its base point, from the per-example gradients of ``examples``
    examples drawn without replacement (seeded; all for None). Needs ``bn="eval"``. See
    :func:`noise_scale_from_gradients` for the estimator and its standard error.
    """
    start = time.perf_counter()
    index = pick_examples(obj, examples, seed)
    if len(index) < 3:
        raise ConfigError(f"the noise scale needs at least 3 examples, got {len(index)}")
    est = noise_scale_from_gradients(per_example_gradients(obj, index, chunk_size=chunk_size))
    est.seconds = time.perf_counter() - start
    est.extra["loss"] = obj.value()
    return est
