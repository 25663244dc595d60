"""Frequency content of long SGD trajectories (Chaudhari's thesis, Sec. 6.3, Fig. 6.3).

For selected weight components, the increments u_t = w_{t+1} - w_t (t = 1..T) are standardized (zero mean,
unit variance). If SGD were Brownian motion, u would be white noise: its sample autocorrelation at any lag k
>= 1 is approximately N(0, 1/T), so 95% of lags fall inside +-1.96/sqrt(T), and its periodogram |FFT(u)|^2 / T
is flat with ordinates ~ Exp(1); the mean periodogram of k independent components is Gamma(k, 1/k), whose
97.5% quantile is returned as the white-noise band. Low-frequency periodic components show as periodogram
peaks and autocorrelations far outside the bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats

from ..errors import ConfigError

__all__ = ["IncrementSpectrum", "autocorrelation", "increment_spectrum"]


def autocorrelation(u: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation r_k = sum_t u_t u_{t+k} / sum_t u_t^2 (k = 0..max_lag) of each column of ``u``
    ``[T, k]`` after removing its mean, by FFT with zero padding (the biased estimator, as in statsmodels)."""
    u = u - u.mean(axis=0, keepdims=True)
    t = len(u)
    size = 1 << int(np.ceil(np.log2(2 * t)))
    f = np.fft.rfft(u, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[: max_lag + 1]
    return acov / np.where(acov[:1] == 0, 1.0, acov[:1])


@dataclass
class IncrementSpectrum:
    """Periodogram (``freqs`` in cycles per step, ``power`` mean over components) and autocorrelation (``acf``
    ``[lags + 1]`` mean over components, ``acf_components`` ``[k, lags + 1]``) of standardized increments,
    with the white-noise bands and the fraction of (component, lag >= 1) pairs outside the acf band."""

    components: np.ndarray
    freqs: np.ndarray
    power: np.ndarray
    power_band: float
    acf: np.ndarray
    acf_components: np.ndarray
    acf_band: float
    outside_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}


def increment_spectrum(
    trajectory: torch.Tensor | np.ndarray | Sequence[torch.Tensor],
    components: int | Sequence[int] = 10,
    max_lag: int | None = None,
    seed: int = 0,
) -> IncrementSpectrum:
    """Periodogram and autocorrelation of the increments of a ``[T + 1, p]`` weight trajectory (module
    docstring).

    ``components``: a count drawn seeded among the components that move, or explicit indices.
    """
    if isinstance(trajectory, (list, tuple)):
        trajectory = torch.stack([torch.as_tensor(w).reshape(-1) for w in trajectory])
    w = trajectory.detach().double().cpu().numpy() if isinstance(trajectory, torch.Tensor) else trajectory
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2 or len(w) < 8:
        raise ConfigError(f"need a [T + 1, p] trajectory with at least 8 points, got shape {w.shape}")
    u = np.diff(w, axis=0)
    moving = np.flatnonzero(u.std(axis=0) > 0)
    if isinstance(components, int):
        if len(moving) == 0:
            raise ConfigError("no weight component moves along the trajectory")
        rng = np.random.default_rng(seed)
        comps = np.sort(rng.choice(moving, size=min(components, len(moving)), replace=False))
    else:
        comps = np.asarray(components, dtype=np.int64)
        if np.any(u[:, comps].std(axis=0) == 0):
            raise ConfigError("some selected components do not move along the trajectory")
    x = u[:, comps]
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    t = len(x)
    max_lag = min(t - 1, max_lag if max_lag is not None else t // 4)
    power = (np.abs(np.fft.rfft(x, axis=0)) ** 2 / t)[1:]  # drop the zero frequency (mean removed)
    freqs = np.fft.rfftfreq(t)[1:]
    acf = autocorrelation(x, max_lag)
    band = 1.96 / np.sqrt(t)
    k = len(comps)
    return IncrementSpectrum(
        components=comps,
        freqs=freqs,
        power=power.mean(axis=1),
        power_band=float(stats.gamma.ppf(0.975, k, scale=1.0 / k)),
        acf=acf.mean(axis=1),
        acf_components=acf.T,
        acf_band=float(band),
        outside_fraction=float(np.mean(np.abs(acf[1:]) > band)) if max_lag >= 1 else 0.0,
    )
