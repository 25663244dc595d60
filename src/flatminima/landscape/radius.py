"""Flatness radius (Theory IIb, eq. 11 and Table 1).

For a point w, a unit direction dw and a tolerance eps,

    r(w, dw, eps) = sup{ r >= 0 : |I(w) - I(w + r dw)| <= eps },

averaged over random isotropic unit directions (all parameters, or the top layer only). Each radius is found
by bracketing then bisection: starting from ``r_init`` the probe doubles while the loss change stays within
eps (halves while it does not, if the very first probe already leaves the eps-band), and the bracket [lo, hi]
(lo inside, hi outside) is bisected until hi - lo <= tol * hi; the radius reported is (lo + hi) / 2. The
probes of all unfinished directions are evaluated together (vmap over parameter vectors,
:func:`evaluate_points`).

Decisions: the sup is taken along the first exit found by this bracketing (a loss that leaves the eps-band and
comes back further out is not followed); a non-finite loss counts as outside the band; a direction still
inside at ``r_max`` is censored at ``r_max`` (counted in ``extra["censored"]``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch

from .._progress import progress_bar
from .._validate import check_float, check_int, check_seed
from ..errors import ConfigError
from ..estimate import Estimate
from ..objective import Objective
from .directions import random_unit_directions
from .evaluate import evaluate_points

__all__ = ["flatness_radius", "radii_along"]


def radii_along(
    obj: Objective,
    directions: torch.Tensor,
    eps: float = 0.05,
    tol: float = 1e-3,
    r_init: float = 0.1,
    r_max: float = 1e4,
    r_min: float = 1e-8,
    batch_points: int = 16,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Radii r(w, d_j, eps) along each row of ``directions`` ``[T, p]`` (rows need not be unit: r is in units
    of the given vector). Returns ``(radii [T], censored mask [T], number of loss evaluations)``."""
    eps = check_float("eps", eps, gt=0)
    tol = check_float("tol", tol, gt=0, lt=1)
    r_min = check_float("r_min", r_min, gt=0)
    r_init = check_float("r_init", r_init, gt=r_min)
    r_max = check_float("r_max", r_max, gt=r_init)
    check_int("batch_points", batch_points, ge=1)
    if directions.dim() != 2 or directions.shape[1] != obj.num_params:
        raise ConfigError(f"directions must have shape [T, {obj.num_params}], got {tuple(directions.shape)}")
    base = obj.value()
    if not math.isfinite(base):
        raise ConfigError(f"the loss at the base point is {base}: a flatness radius needs a finite loss")
    count = len(directions)
    lo = np.zeros(count)
    hi = np.full(count, np.inf)
    done = np.zeros(count, dtype=bool)
    evaluations = 0
    max_iter = int(math.log2(r_max / r_min)) + int(math.log2(1.0 / tol)) + 8
    with progress_bar(max_iter, "flatness radius") as bar:
        for _ in range(max_iter):
            active = np.flatnonzero(~done)
            if len(active) == 0:
                break
            r = np.where(
                np.isfinite(hi[active]),
                np.where(lo[active] > 0, 0.5 * (lo[active] + hi[active]), 0.5 * hi[active]),
                np.where(lo[active] > 0, 2.0 * lo[active], r_init),
            )
            steps = torch.as_tensor(r, dtype=obj.dtype, device=obj.device).unsqueeze(1)
            thetas = obj.theta.unsqueeze(0) + steps * directions[torch.as_tensor(active, device=obj.device)]
            values, _ = evaluate_points(obj, thetas, batch_points=batch_points)
            evaluations += len(active)
            inside = np.isfinite(values) & (np.abs(values - base) <= eps)
            lo[active] = np.where(inside, r, lo[active])
            hi[active] = np.where(inside, hi[active], r)
            bracketed = (lo > 0) & np.isfinite(hi) & (hi - lo <= tol * hi)
            done |= bracketed | (lo >= r_max) | (hi <= r_min)
            bar.advance()
    censored = lo >= r_max
    radii = np.where(
        censored, r_max, np.where(lo > 0, 0.5 * (lo + np.where(np.isfinite(hi), hi, lo)), 0.5 * hi)
    )
    return radii, censored, evaluations


def flatness_radius(
    obj: Objective,
    eps: float = 0.05,
    directions: int = 20,
    params: str | Sequence[str] = "all",
    seed: int = 0,
    tol: float = 1e-3,
    r_init: float = 0.1,
    r_max: float = 1e4,
    batch_points: int = 16,
) -> Estimate:
    """Mean flatness radius over ``directions`` seeded isotropic unit directions (Theory IIb, eq. 11).

    ``params``: ``"all"``, ``"top"`` (the last parametrized module) or name pattern(s). Returns an Estimate
    with ``value`` the mean radius, ``std`` (ddof=1), ``stderr`` = std / sqrt(T), ``samples`` the
    per-direction radii, and ``extra`` = {eps, tol, params, censored, evaluations, base_loss}.
    """
    directions = check_int("directions", directions, ge=1)
    eps = check_float("eps", eps, gt=0)
    tol = check_float("tol", tol, gt=0, lt=1)
    check_seed(seed)
    start = time.perf_counter()
    dirs = random_unit_directions(obj, directions, params=params, seed=seed)
    radii, censored, evaluations = radii_along(
        obj, dirs, eps=eps, tol=tol, r_init=r_init, r_max=r_max, batch_points=batch_points
    )
    std = float(np.std(radii, ddof=1)) if directions > 1 else math.nan
    return Estimate(
        value=float(np.mean(radii)),
        std=std,
        stderr=std / math.sqrt(directions) if directions > 1 else math.nan,
        samples=[float(r) for r in radii],
        seconds=time.perf_counter() - start,
        converged=not bool(censored.any()),
        extra={
            "eps": eps,
            "tol": tol,
            "params": params if isinstance(params, str) else list(params),
            "censored": int(censored.sum()),
            "evaluations": evaluations,
            "base_loss": obj.value(),
        },
    )
