"""Linear stability for SGD (Wu, Ma & E 2018, Thm 1, eq. 8; Sec. 2 quadratic; eq. 9 bounds)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.curvature import GGNOperator, StabilityOperator, linear_stability

from .dense import dense_hessian, dense_sigma
from .test_curvature_eigen import one_thread  # noqa: F401  (fixture)
from .test_curvature_nonuniformity import _dense_ggn_sigma


def _half_square(out: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    return 0.5 * out.reshape(len(out), -1).pow(2).sum(1)


def _rank_one_quadratic(z: torch.Tensor) -> Objective:
    """l_i(w) = (w . z_i)^2 / 2, so H_i = z_i z_i^T exactly (f = (1/2n) sum_i x^T H_i x, Wu Sec. 3)."""
    net = nn.Linear(z.shape[1], 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(0.1)
    return Objective(net, loss=_half_square, x=z.double(), y=torch.zeros(len(z), 1, dtype=torch.float64))


def _factor(n: int, b: int) -> float:
    return (n - b) / (b * (n - 1))


@pytest.mark.parametrize("method", ["exact", "ggn"])
def test_one_dimensional_quadratic_matches_closed_form(method):
    a_i = torch.tensor([0.5, 1.0, 3.0, 0.2, 2.3, 1.5], dtype=torch.float64)
    n = len(a_i)
    obj = _rank_one_quadratic(a_i.sqrt().reshape(-1, 1))  # 1-D: H_i = a_i
    a, s2 = float(a_i.mean()), float(a_i.var(unbiased=False))  # a = mean a_i, s^2 = (1/n) sum a_i^2 - a^2
    checked = 0
    for eta in (0.1, 0.4, 0.7, 0.9, 1.2):
        for b in (1, 2, 3, n):
            value = (1 - eta * a) ** 2 + eta**2 * _factor(n, b) * s2
            if abs(value - 1) < 1e-9:
                continue
            st = linear_stability(obj, lr=eta, batch_size=b, method=method, tol=1e-10)
            assert st.spectral_value == pytest.approx(value, rel=1e-10)
            assert st.stable == (value <= 1)
            assert st.sharpness == pytest.approx(a, rel=1e-10)
            assert st.non_uniformity == pytest.approx(math.sqrt(s2), rel=1e-8)
            checked += 1
    assert checked > 15
    # B = 1: Wu's Sec. 2 form (1 - eta a)^2 + eta^2 s^2 (the sampling factor is exactly 1).
    st = linear_stability(obj, lr=0.7, batch_size=1, method=method)
    assert st.spectral_value == pytest.approx((1 - 0.7 * a) ** 2 + 0.49 * s2, rel=1e-10)


def test_d_dimensional_quadratic_matches_dense_eq8():
    g = torch.Generator().manual_seed(3)
    n, d = 8, 5
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    obj = _rank_one_quadratic(z)
    hs = [torch.outer(zi, zi) for zi in z]
    h = sum(hs) / n
    sigma = sum(hi @ hi for hi in hs) / n - h @ h
    eye = torch.eye(d, dtype=torch.float64)
    a = float(torch.linalg.eigvalsh(h)[-1])
    s = math.sqrt(float(torch.linalg.eigvalsh(sigma)[-1]))
    verdicts = set()
    for eta in (0.05, 0.2, 0.35, 0.6):
        for b in (1, 3, n):
            m = (eye - eta * h) @ (eye - eta * h) + eta**2 * _factor(n, b) * sigma
            ref = float(torch.linalg.eigvalsh(m)[-1])
            st = linear_stability(obj, lr=eta, batch_size=b, tol=1e-10)
            assert st.spectral_value == pytest.approx(ref, rel=1e-8)
            assert st.stable == (ref <= 1)
            verdicts.add(st.stable)
            assert st.sharpness == pytest.approx(a, rel=1e-8)
            assert st.non_uniformity == pytest.approx(s, rel=1e-7)
            assert st.sharpness_bound == pytest.approx(2 / eta)
            bound = math.inf if b == n else math.sqrt(b * (n - 1) / (n - b)) / eta
            assert st.non_uniformity_bound == pytest.approx(bound)
            # eq. 9 is necessary for eq. 8.
            if st.stable:
                assert st.sharpness <= st.sharpness_bound and st.non_uniformity <= st.non_uniformity_bound
    assert verdicts == {True, False}


@pytest.mark.parametrize("method", ["exact", "ggn"])
def test_stability_operator_matches_dense_on_an_mlp(tiny_mlp, tiny_data, method):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    eta, b = 0.3, 4
    if method == "exact":
        h, sigma = dense_hessian(obj), dense_sigma(obj)
    else:  # the Gauss-Newton engine uses G for H and the Gauss-Newton Sigma, consistently
        h, sigma = GGNOperator(obj).to_dense(), _dense_ggn_sigma(obj)
    eye = torch.eye(len(h), dtype=h.dtype)
    ref = (eye - eta * h) @ (eye - eta * h) + eta**2 * _factor(obj.n, b) * sigma
    op = StabilityOperator(obj, eta, b, method=method)
    assert torch.allclose(op.to_dense(), ref, atol=1e-10 * float(ref.abs().max()))
    st = linear_stability(obj, eta, b, method=method, tol=1e-9, components=False)
    assert st.spectral_value == pytest.approx(float(torch.linalg.eigvalsh(ref)[-1]), rel=1e-8)
    assert math.isnan(st.sharpness) and st.method == method


def test_flat_directions_give_exactly_one_and_count_as_stable():
    # 3 examples in 6 dimensions: H and Sigma vanish on a 3-dimensional subspace, eigenvalue 1 of eq. 8.
    g = torch.Generator().manual_seed(5)
    obj = _rank_one_quadratic(0.3 * torch.randn(3, 6, generator=g, dtype=torch.float64))
    st = linear_stability(obj, lr=0.1, batch_size=1, tol=1e-10)
    assert st.spectral_value == pytest.approx(1.0, abs=1e-12) and st.stable
    assert linear_stability(obj, lr=100.0, batch_size=1).stable is False


def test_bad_learning_rate_or_batch_size(tiny_mlp, tiny_data):
    x, y = tiny_data
    obj = Objective(tiny_mlp, x=x, y=y)
    for lr, b in [(0.0, 2), (-0.1, 2), (math.nan, 2), (0.1, 0), (0.1, 11), (0.1, 2.5)]:
        with pytest.raises(ConfigError):
            linear_stability(obj, lr=lr, batch_size=b)
    st = linear_stability(obj, lr=0.01, batch_size=10, components=False)
    assert st.sampling_factor == 0.0 and st.non_uniformity_bound == math.inf
