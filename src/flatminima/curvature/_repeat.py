"""Repeats on random data subsets: ``subsamples=k, subsample_size=m`` -> mean ± std over k subsets."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from ..estimate import Estimate
from ._feedback import check_subsamples


def over_subsets(
    obj,
    measure: Callable[[object, int], Estimate],
    subsamples: int | None,
    subsample_size: int | None,
    seed: int,
) -> Estimate:
    """``measure(obj, seed)`` on the full data (``subsamples=None``), or on ``subsamples`` (>= 1) random
    subsets of ``subsample_size``.

    Subsets are drawn without replacement (independently per repeat) from a generator seeded with ``seed``.
    With repeats: ``value`` = mean, ``std`` = sample std (ddof=1), ``stderr`` = std / sqrt(k) (the standard
    error of the mean over size-m subsets, which estimates the mean over random m-subsets, not the full-data
    value), ``samples`` the k values, ``residual`` the worst residual, ``matvecs`` the total.
    """
    check_subsamples(obj, subsamples, subsample_size)
    if subsamples is None:
        return measure(obj, seed)
    m = subsample_size if subsample_size is not None else obj.n
    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    runs = []
    for j in range(subsamples):
        idx = torch.randperm(obj.n, generator=g)[:m]
        runs.append(measure(obj.subset(idx), seed + 1 + j))
    values = [r.value for r in runs]
    k = len(values)
    mean = sum(values) / k
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1)) if k > 1 else math.nan
    residuals = [r.residual for r in runs if not math.isnan(r.residual)]
    return Estimate(
        value=mean,
        residual=max(residuals) if residuals else math.nan,
        matvecs=sum(r.matvecs for r in runs),
        converged=all(r.converged for r in runs),
        seconds=time.perf_counter() - start,
        stderr=std / math.sqrt(k) if k > 1 else math.nan,
        std=std,
        samples=values,
        extra={"subsamples": k, "subsample_size": m, "runs": [_light(r) for r in runs]},
    )


def _light(est: Estimate) -> dict:
    """A repeat's numbers without tensors (eigenvectors stay out of the summary)."""
    keep = {k: v for k, v in est.extra.items() if isinstance(v, (int, float, str, bool))}
    return {
        "value": est.value,
        "residual": est.residual,
        "matvecs": est.matvecs,
        "stderr": est.stderr,
        **keep,
    }
