"""Worst-case and average-case (adaptive) sharpness of Andriushchenko, Croce, Müller, Hein & Flammarion 2023
(ICML, "A modern look at the relationship between sharpness and generalization", Sec. 3, eqs. 1-2), with the
m-sharpness of Foret, Kleiner, Mobahi & Neyshabur 2021 (ICLR, Sec. 4.1).

With c the scaling vector (``adaptive=True``: c = |w|, the element-wise scaling of ASAM, Kwon et al. 2021;
``adaptive=False``: c = 1) and S a batch of m examples,

    S_max(w, c) = E_S [ max_{||delta / c||_p <= rho} L_S(w + delta) - L_S(w) ],               (worst case)
    S_avg(w, c) = E_{S, delta ~ N(0, rho^2 diag(c^2))} [ L_S(w + delta) - L_S(w) ],           (average case)

p in {2, inf}. The expectation over S is the mean over disjoint batches of m examples (a seeded random
partition of the objective's examples; the n mod m left over are not used): Foret et al.'s m-sharpness, the
max taken per batch and then averaged. ``m=None`` uses one batch of all examples. The inner maximum is found
by projected gradient ascent in the scaled variable u = delta / c (:mod:`._ascent`; Andriushchenko et al. use
Auto-PGD with 20 steps); the Gaussian expectation by ``samples`` draws per batch.

Errors: ``samples`` of the Estimate are the per-batch values, ``std`` their spread and ``stderr`` = std /
sqrt(batches) (with one batch: the Monte-Carlo standard error over the draws for the average case, NaN for the
deterministic worst case).
"""

from __future__ import annotations

import math
import time
from typing import Literal

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimate import Estimate
from ..objective import Objective
from ._ascent import check_norm, maximize_on_ball

__all__ = ["adaptive_sharpness", "disjoint_batches"]

Kind = Literal["worst", "average"]


def disjoint_batches(n: int, m: int | None, seed: int, batches: int | None = None) -> list[Tensor]:
    """floor(n / m) disjoint index batches of m examples from a seeded random permutation (all n for None);
    at most ``batches`` of them."""
    if m is None or m >= n:
        return [torch.arange(n)]
    if isinstance(m, bool) or int(m) != m or m < 1:
        raise ConfigError(f"m must be a positive integer, got {m!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    out = [perm[i * m : (i + 1) * m].sort().values for i in range(n // m)]
    return out[:batches] if batches is not None else out


def adaptive_sharpness(
    obj: Objective,
    rho: float = 0.05,
    kind: Kind = "worst",
    norm: str | float = 2,
    adaptive: bool = True,
    m: int | None = None,
    batches: int | None = None,
    steps: int = 20,
    restarts: int = 1,
    samples: int = 10,
    seed: int = 0,
) -> Estimate:
    """S_max (``kind="worst"``) or S_avg (``kind="average"``), Andriushchenko et al. 2023 (module docstring).

    ``rho``: the radius (of delta / c in the p-norm; the noise scale for the average case); ``norm``: 2 or inf
    (the worst case only); ``adaptive``: c = |w| (True) or c = 1; ``m``: examples per batch (m-sharpness;
    None: all); ``batches``: use at most that many batches; ``steps`` / ``restarts``: the ascent;
    ``samples``: Gaussian draws per batch. ``extra`` holds the per-batch base losses, the settings,
    ``evaluations`` (passes over a batch) and, for the worst case on one batch, the maximiser ``delta``.
    """
    if not rho >= 0 or not math.isfinite(rho):
        raise ConfigError(f"rho must be a finite number >= 0, got {rho!r}")
    if kind not in ("worst", "average"):
        raise ConfigError(f"kind must be 'worst' or 'average', got {kind!r}")
    p_norm = check_norm(norm)
    if kind == "average" and (isinstance(samples, bool) or int(samples) != samples or samples < 1):
        raise ConfigError(f"samples must be a positive integer, got {samples!r}")
    if batches is not None and (isinstance(batches, bool) or int(batches) != batches or batches < 1):
        raise ConfigError(f"batches must be a positive integer or None, got {batches!r}")
    start = time.perf_counter()
    c = obj.theta.abs() if adaptive else torch.ones_like(obj.theta)
    index = disjoint_batches(obj.n, m, seed, batches)
    values, bases, draws, evaluations, maximiser = [], [], [], 0, None
    gen = torch.Generator().manual_seed(seed + 1)
    for j, idx in enumerate(index):
        sub = obj.subset(idx) if len(idx) < obj.n else obj
        base = sub.value()
        bases.append(base)
        if kind == "worst":
            res = maximize_on_ball(
                sub,
                lambda u: c * u,
                lambda g: c * g,
                obj.num_params,
                p_norm,
                float(rho),
                steps=steps,
                restarts=restarts,
                seed=seed + 7919 * j,
                base=base,
            )
            values.append(res.value - base)
            evaluations += res.evaluations
            maximiser = res.delta.detach() if len(index) == 1 else None
        else:
            diffs = []
            for _ in range(int(samples)):
                z = torch.randn(obj.num_params, generator=gen, dtype=torch.float64).to(c.device, c.dtype)
                diffs.append(sub.value(obj.theta + rho * c * z) - base)
            evaluations += int(samples)
            draws.append(diffs)
            values.append(sum(diffs) / len(diffs))
    k = len(values)
    mean = sum(values) / k
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else math.nan
    if k > 1:
        stderr = std / math.sqrt(k)
    elif kind == "average" and len(draws[0]) > 1:
        d = draws[0]
        stderr = math.sqrt(sum((v - mean) ** 2 for v in d) / (len(d) - 1) / len(d))
    else:
        stderr = math.nan
    return Estimate(
        value=mean,
        seconds=time.perf_counter() - start,
        stderr=stderr,
        std=std,
        samples=values,
        extra={
            "kind": kind,
            "norm": p_norm if kind == "worst" else "gaussian",
            "rho": float(rho),
            "adaptive": bool(adaptive),
            "m": len(index[0]),
            "batches": k,
            "base_losses": bases,
            "evaluations": evaluations,
            "steps": steps if kind == "worst" else 0,
            "samples_per_batch": int(samples) if kind == "average" else 0,
            "delta": maximiser,
        },
    )
