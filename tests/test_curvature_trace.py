"""Trace estimators, stochastic Lanczos quadrature, spectral density, spectrum summary and log det."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatminima import ConfigError, Objective, UnknownNameError
from flatminima.curvature import (
    CallableOperator,
    HessianOperator,
    hessian_trace,
    hutchinson,
    hutchpp,
    local_entropy_width,
    plot_density,
    spectral_density,
    spectrum_summary,
)
from flatminima.curvature.lanczos import lanczos_tridiagonal

from .dense import dense_hessian
from .test_curvature_eigen import convbn_obj_fixture, mlp_obj_fixture, one_thread  # noqa: F401


@pytest.mark.parametrize("which", ["mlp", "convbn"])
@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_four_standard_errors(which, method, mlp_obj, convbn_obj):
    obj = mlp_obj if which == "mlp" else convbn_obj
    true = float(torch.trace(dense_hessian(obj)))
    for seed in range(3):
        est = hessian_trace(obj, matvecs=30, method=method, seed=seed)
        assert est.matvecs == 30 and est.stderr > 0 and math.isfinite(est.stderr)
        assert abs(est.value - true) < 4 * est.stderr
    assert hessian_trace(obj, matvecs=30, method=method, seed=2).value == est.value  # same seed, same numbers


def test_hutchpp_is_exact_when_the_sketch_spans_the_space(mlp_obj):
    h = dense_hessian(mlp_obj)
    p = len(h)
    est = hutchpp(HessianOperator(mlp_obj), matvecs=3 * p + 3, seed=0)
    assert est.value == pytest.approx(float(torch.trace(h)), rel=1e-9, abs=1e-9)
    assert est.stderr < 1e-8


def test_hutchpp_beats_hutchinson_on_a_low_rank_spectrum():
    eigs = torch.cat([torch.tensor([100.0, 80.0, 60.0, 50.0]), 0.01 * torch.ones(196)]).double()
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(200, 200, generator=g, dtype=torch.float64))
    op = CallableOperator.from_matrix(q @ torch.diag(eigs) @ q.T)
    hp, hu = hutchpp(op, matvecs=30), hutchinson(op, matvecs=30)
    assert hp.stderr < 0.1 * hu.stderr
    assert abs(hp.value - float(eigs.sum())) < 4 * hp.stderr + 1e-9
    with pytest.raises(UnknownNameError):
        hessian_trace(
            Objective(torch.nn.Linear(2, 1).double(), x=torch.ones(3, 2), y=torch.ones(3, 1)), method="x"
        )
    with pytest.raises(ConfigError):
        hutchpp(op, matvecs=3)


def test_lanczos_quadrature_is_exact_for_low_degree_polynomials(mlp_obj):
    h = dense_hessian(mlp_obj)
    v = torch.randn(len(h), dtype=torch.float64)
    theta, tau = lanczos_tridiagonal(HessianOperator(mlp_obj), v, steps=5)
    assert float(tau.sum()) == pytest.approx(1.0)
    hk = torch.eye(len(h), dtype=h.dtype)
    for degree in range(1, 10):  # Gauss quadrature with 5 nodes is exact up to degree 9
        hk = hk @ h
        ref = float(v @ hk @ v) / float(v @ v)
        assert float((tau * theta**degree).sum()) == pytest.approx(ref, rel=1e-7)


def test_spectral_density_and_summary(mlp_obj, tmp_path):
    ev = torch.linalg.eigvalsh(dense_hessian(mlp_obj))
    p = len(ev)
    dens = spectral_density(mlp_obj, steps=p, runs=8, seed=0)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-3)
    assert dens.nodes.min() == pytest.approx(float(ev[0]), rel=1e-6)
    assert dens.nodes.max() == pytest.approx(float(ev[-1]), rel=1e-6)
    thr = 0.05
    share, se = dens.share(-thr, thr)
    true_share = float((ev.abs() <= thr).double().mean())
    assert abs(share - true_share) < 4 * se + 1e-9
    summary = spectrum_summary(mlp_obj, threshold=thr, steps=p, runs=8, tol=1e-7, method="slq")
    assert summary.method == "slq"
    assert summary.near_zero_share == pytest.approx(share)
    assert summary.top_eigenvalue.value == pytest.approx(float(ev[-1]), rel=1e-6)
    assert summary.most_negative_eigenvalue.value == pytest.approx(float(ev[0]), rel=1e-6)
    exact = spectrum_summary(mlp_obj, threshold=thr, steps=p, runs=8)  # auto: dense for small p
    assert exact.method == "dense" and exact.near_zero_share == pytest.approx(true_share, abs=1e-12)
    assert exact.top_eigenvalue.value == pytest.approx(float(ev[-1]), rel=1e-10)
    assert exact.most_negative_eigenvalue.value == pytest.approx(float(ev[0]), rel=1e-10)
    with pytest.raises(ConfigError, match="method"):
        spectrum_summary(mlp_obj, method="exact")
    png = plot_density(dens, tmp_path / "sub" / "density.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert sorted(x.name for x in png.parent.iterdir()) == ["density.png"]
    same = spectral_density(mlp_obj, steps=p, runs=8, seed=0)
    assert np.array_equal(same.density, dens.density)


@pytest.mark.parametrize("steps", [20, 51])
def test_log_det_by_slq_within_its_error(mlp_obj, steps):
    h = dense_hessian(mlp_obj)
    gamma = 1.0  # H + I/gamma is positive definite here (smallest eigenvalue of H ~ -0.58)
    assert float(torch.linalg.eigvalsh(h)[0]) + 1 / gamma > 0
    true = 0.5 * float(torch.logdet(h + torch.eye(len(h), dtype=h.dtype) / gamma))
    est = local_entropy_width(mlp_obj, gamma, steps=steps, runs=20, seed=1, negative="error")
    assert est.stderr > 0 and abs(est.value - true) < 4 * est.stderr


def test_log_det_negative_curvature_policy(mlp_obj):
    h = dense_hessian(mlp_obj)
    ev = torch.linalg.eigvalsh(h)
    gamma = 10.0  # 1/gamma = 0.1 < |most negative eigenvalue|: H + I/gamma is indefinite
    with pytest.raises(ConfigError, match="positive definite"):
        local_entropy_width(mlp_obj, gamma, steps=len(h), runs=4, negative="error")
    est = local_entropy_width(mlp_obj, gamma, steps=len(h), runs=30, seed=0, negative="clip")
    true = 0.5 * float(torch.log(ev.clamp_min(0) + 1 / gamma).sum())
    assert abs(est.value - true) < 4 * est.stderr
    assert est.extra["clipped_share"] == pytest.approx(float((ev < 0).double().mean()), abs=0.15)
    with pytest.raises(ConfigError):
        local_entropy_width(mlp_obj, -1.0)


def test_orthonormal_basis_spans_the_block_and_falls_back_when_rank_deficient() -> None:
    from flatminima.curvature.trace import orthonormal_basis

    g = torch.Generator().manual_seed(0)
    for scale in (torch.ones(6), torch.logspace(0, -4, 6, dtype=torch.float64)):
        y = torch.randn(500, 6, generator=g, dtype=torch.float64) * scale
        q = orthonormal_basis(y)
        torch.testing.assert_close(q.T @ q, torch.eye(6, dtype=torch.float64), atol=1e-10, rtol=0)
        torch.testing.assert_close(q @ (q.T @ y), y, atol=1e-10, rtol=0)  # same span
    y = torch.randn(500, 3, generator=g, dtype=torch.float64)
    deficient = torch.cat([y, y[:, :1] + y[:, 1:2]], dim=1)  # rank 3 in 4 columns: Cholesky fails
    q = orthonormal_basis(deficient)
    assert q.shape == (500, 4)
    torch.testing.assert_close(q @ (q.T @ deficient), deficient, atol=1e-10, rtol=0)


def test_quadratic_forms_of_composed_operators_equal_their_products() -> None:
    from flatminima.curvature.operators import CallableOperator, identity

    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 7, generator=g, dtype=torch.float64)
    a = a + a.T
    op = CallableOperator(lambda v: a @ v, 7, torch.float64)
    V = torch.randn(7, 4, generator=g, dtype=torch.float64)
    for composed in (op, 2.0 * op, op - 3.0 * identity(7), -op + op, op @ op):
        expected = (V * (composed @ V)).sum(0)
        torch.testing.assert_close(composed.quadratic_forms(V), expected, rtol=1e-12, atol=1e-12)
    before = op.matvecs
    (op - identity(7)).quadratic_forms(V)
    assert op.matvecs == before + 4  # b products of the operator, the identity's are free
