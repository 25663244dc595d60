"""Gradient noise scale B_simple (McCandlish et al. 2018) against an explicit numpy computation on
per-example gradients (taken one example at a time with autograd, not vmap), and the estimator's
unbiasedness / the jackknife standard error's calibration on synthetic Gaussian gradients with known G and
Sigma."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import flatminima as fm
from flatminima.errors import ConfigError
from flatminima.noise import noise_scale_from_gradients


def _numpy_b(g: np.ndarray) -> tuple[float, float, float]:
    m = len(g)
    trace = float(np.trace(np.atleast_2d(np.cov(g.T, ddof=1))))
    signal = float(np.sum(g.mean(0) ** 2) - trace / m)
    return trace / signal, trace, signal


def test_noise_scale_matches_numpy_on_a_tiny_net(tiny_mlp, tiny_data) -> None:
    x, y = tiny_data
    y = y + 2.0  # targets away from the outputs: a gradient the noise does not swamp
    obj = fm.Objective(tiny_mlp, "mse", x, y)
    rows = []
    for i in range(len(x)):  # per-example gradients the slow, obvious way
        tiny_mlp.zero_grad()
        torch.nn.functional.mse_loss(tiny_mlp(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in tiny_mlp.parameters()]).numpy().copy())
    g = np.stack(rows)
    b, trace, signal = _numpy_b(g)
    assert signal > 0
    loo = np.array([_numpy_b(np.delete(g, j, axis=0))[0] for j in range(len(g))])
    se = math.sqrt((len(g) - 1) / len(g) * np.sum((loo - loo.mean()) ** 2))
    est = fm.noise_scale(obj)
    assert est.value == pytest.approx(b, rel=1e-9)
    assert est.extra["trace_sigma"] == pytest.approx(trace, rel=1e-9)
    assert est.extra["grad_norm_sq"] == pytest.approx(signal, rel=1e-9)
    assert est.stderr == pytest.approx(se, rel=1e-8)
    plug_in = (np.sum((g - g.mean(0)) ** 2) / len(g)) / np.sum(g.mean(0) ** 2)
    assert est.extra["biased"] == pytest.approx(plug_in, rel=1e-9)
    sub = fm.noise_scale(obj, examples=6, seed=3)
    assert sub.extra["examples"] == 6


def test_estimator_is_unbiased_and_the_jackknife_is_calibrated() -> None:
    rng = np.random.default_rng(0)
    p, m, reps = 20, 60, 400
    scales = np.linspace(0.5, 2.0, p)  # Sigma = diag(scales^2)
    mean = np.full(p, 0.3)
    true_trace, true_signal = float(np.sum(scales**2)), float(np.sum(mean**2))
    b, tr, sig, se = [], [], [], []
    for _ in range(reps):
        g = torch.from_numpy(mean + rng.standard_normal((m, p)) * scales)
        est = noise_scale_from_gradients(g)
        b.append(est.value)
        se.append(est.stderr)
        tr.append(est.extra["trace_sigma"])
        sig.append(est.extra["grad_norm_sq"])
    tr, sig, b = np.array(tr), np.array(sig), np.array(b)
    # unbiased numerator and denominator: their means sit within 4 standard errors of the truth
    assert abs(tr.mean() - true_trace) < 4 * tr.std(ddof=1) / math.sqrt(reps)
    assert abs(sig.mean() - true_signal) < 4 * sig.std(ddof=1) / math.sqrt(reps)
    # the plug-in |g_bar|^2 is biased upwards by tr(Sigma)/m, many standard errors away: the test can tell
    plug = sig + tr / m
    assert plug.mean() - true_signal > 10 * plug.std(ddof=1) / math.sqrt(reps)
    # the jackknife s.e. of B matches the spread of B over data sets (median, robust to the heavy right tail)
    assert np.median(se) == pytest.approx(np.std(b, ddof=1), rel=0.3)


def test_unresolved_signal_and_bad_input() -> None:
    rng = np.random.default_rng(1)
    g = torch.from_numpy(rng.standard_normal((5, 50)))  # G = 0: the estimate of |G|^2 is about 0
    est = noise_scale_from_gradients(g - g.mean(0))  # exactly zero mean: |G|^2^ = -tr/m < 0
    assert est.value == math.inf and est.extra["signal_resolved"] is False
    with pytest.raises(ConfigError):
        noise_scale_from_gradients(torch.zeros(2, 3))
    with pytest.raises(ConfigError):
        noise_scale_from_gradients(torch.zeros(3))
