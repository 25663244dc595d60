"""Per-example gradients and the distribution of minibatch-gradient components (Theory IIb, Fig. 1).

The stochastic gradient of a minibatch B of size b is g_B = (1/b) sum_{i in B} grad l_i. For selected
components j, :func:`gradient_noise` draws ``samples`` minibatches per batch size (each without replacement
within the batch, seeded), and tests the sample of (g_B)_j for normality: D'Agostino-Pearson
(``scipy.stats.normaltest``), Shapiro-Wilk (on at most 5000 values) and Kolmogorov-Smirnov against the fitted
normal N(mean, std^2) (its p-value is optimistic because the parameters are estimated: Lilliefors' caveat,
documented rather than corrected). By the CLT the distribution approaches a Gaussian as b grows, with variance
D_jj / b * (N - b) / (N - 1), D the diffusion matrix (:mod:`.diffusion`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from numbers import Integral
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from .._progress import progress_bar
from .._validate import check_int, check_seed
from ..errors import ConfigError
from ..objective import Objective
from ..objective.dist import require_single_process

__all__ = ["ComponentNoise", "gradient_noise", "per_example_gradients", "pick_examples"]

# Refuse to hold more than this many gradient entries at once (float32 ~ 2 GiB).
MAX_ENTRIES = 512 * 2**20


def pick_examples(obj: Objective, examples: int | None, seed: int) -> Tensor:
    """Indices of ``examples`` examples drawn without replacement (seeded); all examples for ``None``."""
    seed = check_seed(seed)
    if examples is None:
        return torch.arange(obj.n)
    examples = check_int("examples", examples, ge=2)
    if examples >= obj.n:
        return torch.arange(obj.n)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(obj.n, generator=g)[:examples].sort().values


def per_example_gradients(
    obj: Objective,
    index: Tensor | None = None,
    components: Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Per-example gradients grad l_i ``[m, p]`` (or only the columns ``components``) via vmap, in chunks.

    ``index``: which examples (default all). ``chunk_size``: examples per vmapped call (default the
    objective's).
    """
    require_single_process(obj, "per-example gradients (gradient noise, diffusion matrix)")
    index = torch.arange(obj.n) if index is None else torch.as_tensor(index, dtype=torch.long)
    width = obj.num_params if components is None else len(components)
    if len(index) * width > MAX_ENTRIES:
        raise ConfigError(
            f"{len(index)} x {width} per-example gradient entries exceed the memory cap; "
            "pass fewer examples (examples=...) or select components"
        )
    size = chunk_size or obj.chunk_size or 256
    rows = []
    with progress_bar(len(index), "per-example gradients") as bar:
        for s in range(0, len(index), size):
            idx = index[s : s + size].to(obj.device)
            g = obj.per_example_grads(obj.x[idx], obj.y[idx]).detach()
            rows.append(g if components is None else g[:, components.to(obj.device)])
            bar.advance(len(idx))
    return torch.cat(rows)


@dataclass
class ComponentNoise:
    """The minibatch-gradient distribution of one component at one batch size, with normality statistics."""

    batch_size: int
    component: int
    mean: float
    std: float
    predicted_std: float  # sqrt(D_jj / b * (N - b) / (N - 1)) from the per-example gradients
    skew: float
    excess_kurtosis: float
    normaltest_p: float
    shapiro_p: float
    ks_stat: float
    ks_p: float
    samples: np.ndarray

    def to_dict(self, with_samples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["samples"] = self.samples.tolist() if with_samples else None
        return d


def _minibatch_means(g: np.ndarray, batch: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """``samples`` means of ``batch`` rows of g drawn without replacement: ``[samples, k]``."""
    n = len(g)
    out = np.empty((samples, g.shape[1]))
    step = max(1, (2**24) // max(n, 1))  # bound the [step, n] random-key matrix
    for s in range(0, samples, step):
        m = min(step, samples - s)
        idx = np.argpartition(rng.random((m, n)), batch - 1, axis=1)[:, :batch] if batch < n else None
        out[s : s + m] = g.mean(0) if idx is None else g[idx].mean(axis=1)
    return out


def _normality(x: np.ndarray) -> tuple[float, float, float, float]:
    nan = float("nan")
    if np.std(x) == 0:
        return nan, nan, nan, nan
    p_norm = float(stats.normaltest(x).pvalue) if len(x) >= 20 else nan
    p_shap = float(stats.shapiro(x[:5000]).pvalue) if len(x) >= 3 else nan
    ks = stats.kstest(x, "norm", args=(float(np.mean(x)), float(np.std(x, ddof=1))))
    return p_norm, p_shap, float(ks.statistic), float(ks.pvalue)


def gradient_noise(
    obj: Objective,
    batch_sizes: Sequence[int] = (1, 10, 100),
    components: int | Sequence[int] = 5,
    samples: int = 1000,
    examples: int | None = None,
    seed: int = 0,
) -> list[ComponentNoise]:
    """Distribution and normality of minibatch-gradient components (module docstring).

    ``components``: a count (drawn seeded among the components whose per-example gradients vary) or explicit
    indices into the flat vector. ``examples``: use a seeded subset of the data as the population of size N.
    """
    samples = check_int("samples", samples, ge=2)  # a standard deviation needs two minibatches
    batch_sizes = [check_int("batch size", b, ge=1) for b in batch_sizes]
    if not batch_sizes:
        raise ConfigError("batch_sizes must list at least one batch size")
    index = pick_examples(obj, examples, seed)
    n = len(index)
    if any(b > n for b in batch_sizes):
        raise ConfigError(f"batch sizes must lie in [1, {n}], got {batch_sizes}")
    rng = np.random.default_rng(seed)
    if isinstance(components, Integral) and not isinstance(components, bool):
        components = check_int("components", components, ge=1)
        probe = per_example_gradients(obj, index[: min(n, 64)]).double().cpu().numpy()
        varying = np.flatnonzero(probe.std(axis=0) > 0)
        pool = varying if len(varying) else np.arange(obj.num_params)
        comps = np.sort(rng.choice(pool, size=min(components, len(pool)), replace=False))
    else:
        comps = np.asarray(components, dtype=np.int64)
        if comps.min() < 0 or comps.max() >= obj.num_params:
            raise ConfigError(f"component indices must lie in [0, {obj.num_params})")
    g = per_example_gradients(obj, index, torch.as_tensor(comps)).double().cpu().numpy()
    pop_var = g.var(axis=0)  # (1/N) sum (g_i - mean)^2 = D_jj
    out = []
    for b in batch_sizes:
        means = _minibatch_means(g, int(b), samples, rng)
        for j, comp in enumerate(comps):
            x = means[:, j]
            p_norm, p_shap, ks_stat, ks_p = _normality(x)
            out.append(
                ComponentNoise(
                    batch_size=int(b),
                    component=int(comp),
                    mean=float(x.mean()),
                    std=float(x.std(ddof=1)),
                    predicted_std=float(np.sqrt(pop_var[j] / b * (n - b) / max(n - 1, 1))),
                    skew=float(stats.skew(x)),
                    excess_kurtosis=float(stats.kurtosis(x)),
                    normaltest_p=p_norm,
                    shapiro_p=p_shap,
                    ks_stat=ks_stat,
                    ks_p=ks_p,
                    samples=x,
                )
            )
    return out
