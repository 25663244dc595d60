"""Gradient noise: diffusion spectrum (Gram route vs dense), minibatch statistics, FFT/autocorrelation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.noise import (
    architecture_score,
    diffusion_spectrum,
    gradient_noise,
    increment_spectrum,
    per_example_gradients,
    plot_diffusion_spectrum,
    plot_gradient_histograms,
    plot_increment_spectrum,
    temperature,
)


def _linear_regression(n: int, p: int, sigma: float = 0.5, seed: int = 0):
    """y = x.w* + sigma xi; at w = w*, per-example gradients g_i = 2 (x_i.w - y_i) x_i = -2 sigma xi_i x_i."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    w_star = torch.randn(p, generator=g, dtype=torch.float64)
    y = (x @ w_star + sigma * torch.randn(n, generator=g, dtype=torch.float64)).unsqueeze(1)
    model = nn.Linear(p, 1, bias=False).double()
    obj = Objective(model, "mse", x, y, theta=w_star, chunk_size=64)
    grads = 2 * (x @ w_star - y[:, 0]).unsqueeze(1) * x  # closed form
    return obj, grads


def test_per_example_gradients_closed_form() -> None:
    obj, grads = _linear_regression(30, 4)
    assert torch.allclose(per_example_gradients(obj), grads, atol=1e-12)
    assert torch.allclose(
        per_example_gradients(obj, torch.tensor([3, 7]), torch.tensor([1])), grads[[3, 7]][:, [1]]
    )


def test_diffusion_spectrum_matches_dense_matrix() -> None:
    obj, grads = _linear_regression(40, 6)
    n = 40
    gbar = grads.mean(0)
    dense = grads.T @ grads / n - torch.outer(gbar, gbar)  # thesis eq. 6.4
    vals = torch.linalg.eigvalsh(dense).flip(0).numpy()
    spec = diffusion_spectrum(obj)
    np.testing.assert_allclose(spec.eigenvalues[:6], vals, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(spec.eigenvalues[6:], 0.0, atol=1e-9)
    assert spec.rank == 6 == np.linalg.matrix_rank(dense.numpy())
    assert spec.mean == pytest.approx(vals.mean()) and spec.std == pytest.approx(vals.std())
    assert spec.trace == pytest.approx(float(dense.trace()))
    assert spec.score == pytest.approx(6 / 6 + vals.var())
    wo = diffusion_spectrum(obj, replacement=False)
    sample_cov = np.cov(grads.numpy(), rowvar=False)  # 1/(N-1) form
    np.testing.assert_allclose(wo.eigenvalues[:6], np.linalg.eigvalsh(sample_cov)[::-1], rtol=1e-9)


def test_diffusion_rank_is_at_most_n_minus_one_for_wide_models(tiny_mlp: nn.Module, tiny_data) -> None:
    obj = Objective(tiny_mlp, "mse", *tiny_data)  # n = 10 < p = 51
    spec = diffusion_spectrum(obj)
    g = torch.stack(
        [
            torch.autograd.functional.jacobian(
                lambda t, i=i: obj.losses_fn(t, obj.x[i : i + 1], obj.y[i : i + 1])[0], obj.theta
            )
            for i in range(obj.n)
        ]
    )
    centred = g - g.mean(0)
    dense = centred.T @ centred / obj.n
    assert spec.rank == np.linalg.matrix_rank(dense.numpy()) == 9
    np.testing.assert_allclose(
        spec.eigenvalues[:9], torch.linalg.eigvalsh(dense).flip(0)[:9].numpy(), rtol=1e-8
    )
    assert spec.rank_fraction == pytest.approx(9 / obj.num_params)
    sub = diffusion_spectrum(obj, examples=5, seed=1)
    assert sub.n == 5 and sub.rank == 4


def test_temperature_and_score() -> None:
    assert temperature(0.1, 10) == pytest.approx(0.005)
    assert temperature(0.1, 10, n=100, replacement=False) == pytest.approx(0.005 * 0.9)
    assert architecture_score(5, 100, 0.25) == pytest.approx(0.3)
    with pytest.raises(ConfigError):
        temperature(0.1, 10, replacement=False)


def test_minibatch_noise_variance_and_gaussianity(tmp_path) -> None:
    obj, grads = _linear_regression(2000, 3, sigma=1.0, seed=2)
    res = gradient_noise(obj, batch_sizes=(1, 200), components=[0, 2], samples=3000, seed=0)
    assert len(res) == 4
    for r in res:
        # without replacement: var = D_jj / b (N - b)/(N - 1), D from the closed-form gradients
        d_jj = float(grads[:, r.component].var(unbiased=False))
        expected = np.sqrt(d_jj / r.batch_size * (2000 - r.batch_size) / 1999)
        assert r.predicted_std == pytest.approx(expected, rel=1e-9)
        assert r.std == pytest.approx(expected, rel=0.06)
        if r.batch_size == 1:  # product of two Gaussians: heavy tails, rejected as normal
            assert r.normaltest_p < 1e-6 and r.excess_kurtosis > 2.0
        else:  # CLT at b = 200
            assert abs(r.excess_kurtosis) < 0.5 and r.ks_p > 1e-3
    assert plot_gradient_histograms(res, tmp_path / "h.png").stat().st_size > 0
    assert (
        plot_diffusion_spectrum(diffusion_spectrum(obj, examples=100), tmp_path / "d.png").stat().st_size > 0
    )
    again = gradient_noise(obj, batch_sizes=(1, 200), components=[0, 2], samples=3000, seed=0)
    assert np.array_equal(again[3].samples, res[3].samples)


def test_increment_spectrum_white_noise_vs_periodic(tmp_path) -> None:
    rng = np.random.default_rng(0)
    t = 2048
    walk = np.cumsum(rng.normal(size=(t + 1, 20)), axis=0)  # Brownian: white increments
    white = increment_spectrum(walk, components=20)
    assert white.acf[0] == pytest.approx(1.0)
    assert white.outside_fraction < 0.1
    assert white.acf_band == pytest.approx(1.96 / np.sqrt(t))
    assert np.mean(white.power) == pytest.approx(1.0, rel=0.05)
    steps = np.arange(t + 1)
    periodic = np.cumsum(np.sin(2 * np.pi * steps / 64)[:, None] + 0.3 * rng.normal(size=(t + 1, 5)), axis=0)
    spec = increment_spectrum(periodic, components=5)
    assert spec.freqs[np.argmax(spec.power)] == pytest.approx(1 / 64, abs=1 / t)
    assert spec.power.max() > 10 * spec.power_band
    assert spec.outside_fraction > 0.5
    assert plot_increment_spectrum(spec, tmp_path / "f.png").stat().st_size > 0
