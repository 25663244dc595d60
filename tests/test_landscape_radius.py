"""Flatness radius (Theory IIb eq. 11) against the closed form of a quadratic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.landscape import flatness_radius, random_unit_directions, selection_mask


def _quadratic(p: int = 6, n: int = 30, seed: int = 0) -> tuple[Objective, torch.Tensor]:
    """I(w) = mean_i (x_i . w)^2 = w^T A w / 2 with A = 2 X^T X / n, minimum at w = 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    model = nn.Linear(p, 1, bias=False).double()
    obj = Objective(
        model, "mse", x, torch.zeros(n, 1, dtype=torch.float64), theta=torch.zeros(p, dtype=torch.float64)
    )
    return obj, 2.0 * x.T @ x / n


def test_radius_matches_quadratic_closed_form() -> None:
    obj, a = _quadratic()
    eps = 0.05
    est = flatness_radius(obj, eps=eps, directions=12, seed=3, tol=1e-6)
    dirs = random_unit_directions(obj, 12, seed=3)
    expected = torch.sqrt(2 * eps / torch.einsum("kp,pq,kq->k", dirs, a, dirs)).numpy()
    np.testing.assert_allclose(est.samples, expected, rtol=1e-5)
    assert est.value == pytest.approx(expected.mean(), rel=1e-5)
    assert est.std == pytest.approx(expected.std(ddof=1), rel=1e-4)
    assert est.stderr == pytest.approx(est.std / np.sqrt(12))
    assert est.extra["censored"] == 0 and est.converged


def test_radius_off_minimum_uses_absolute_change() -> None:
    obj, a = _quadratic(p=4)
    w0 = torch.tensor([0.3, -0.2, 0.1, 0.05], dtype=torch.float64)
    obj = obj.at(w0)
    est = flatness_radius(obj, eps=0.01, directions=6, seed=1, tol=1e-7, r_init=1e-3)
    dirs = random_unit_directions(obj, 6, seed=1)
    for r, d in zip(est.samples, dirs, strict=True):
        # first r > 0 with |g.d r + d^T A d r^2 / 2| = eps (g = A w0)
        gd, q = float((a @ w0) @ d), float(d @ a @ d)
        roots = np.roots([q / 2, gd, -0.01]).tolist() + np.roots([q / 2, gd, 0.01]).tolist()
        first = min(x.real for x in roots if abs(x.imag) < 1e-12 and x.real > 0)
        assert r == pytest.approx(first, rel=1e-5)


def test_radius_is_censored_at_r_max_and_reproducible() -> None:
    obj, _ = _quadratic()
    est = flatness_radius(obj, eps=1e9, directions=3, r_max=50.0)
    assert est.samples == [50.0] * 3 and est.extra["censored"] == 3 and not est.converged
    a = flatness_radius(obj, directions=4, seed=7).samples
    assert a == flatness_radius(obj, directions=4, seed=7).samples
    assert a != flatness_radius(obj, directions=4, seed=8).samples


def test_top_layer_selection(tiny_mlp: nn.Module, tiny_data) -> None:
    obj = Objective(tiny_mlp, "mse", *tiny_data)
    mask = selection_mask(obj, "top")
    sl = obj.layer_slices()
    assert mask[sl["2.weight"]].all() and mask[sl["2.bias"]].all()
    assert not mask[sl["0.weight"]].any() and not mask[sl["0.bias"]].any()
    dirs = random_unit_directions(obj, 3, params="top")
    assert torch.allclose(dirs.norm(dim=1), torch.ones(3, dtype=dirs.dtype))
    assert (dirs[:, ~mask] == 0).all()
    est = flatness_radius(obj, eps=0.01, directions=3, params="top")
    assert np.all(np.array(est.samples) > 0)
    with pytest.raises(ConfigError):
        selection_mask(obj, "nothing.*")
