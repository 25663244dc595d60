"""Lanczos, power iteration, operators, sharpness and the warm-started probe against dense references."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from flatminima import ConfigError, Objective
from flatminima.curvature import (
    CallableOperator,
    GGNOperator,
    HessianOperator,
    SharpnessProbe,
    hessian_eigenvalues,
    identity,
    lanczos,
    power_iteration,
    sharpness,
)

from .dense import dense_hessian


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny float64 problems: one intra-op thread avoids oversubscription on a shared machine (restored)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(name="mlp_obj")
def mlp_obj_fixture(tiny_mlp, tiny_data) -> Objective:
    x, y = tiny_data
    return Objective(tiny_mlp, loss="mse", x=x, y=y)


@pytest.fixture(name="convbn_obj")
def convbn_obj_fixture(tiny_convbn) -> Objective:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 3, generator=g, dtype=torch.float64)
    return Objective(tiny_convbn, loss="mse", x=x, y=y, chunk_size=4)


def _sym_with_spectrum(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(eigs) @ q.T


@pytest.mark.parametrize("which", ["mlp", "convbn"])
def test_top_k_eigenvalues_match_dense(which, mlp_obj, convbn_obj):
    obj = mlp_obj if which == "mlp" else convbn_obj
    ev = torch.linalg.eigvalsh(dense_hessian(obj))
    k = 6
    top = hessian_eigenvalues(obj, k=k, tol=1e-7)
    ref = ev.flip(0)[:k]
    assert torch.allclose(torch.tensor(top, dtype=torch.float64), ref, rtol=1e-6, atol=1e-9 * float(ref[0]))
    low = hessian_eigenvalues(obj, k=2, which="SA", tol=1e-7)
    assert low == pytest.approx(ev[:2].tolist(), rel=1e-6, abs=1e-9 * float(ev.abs().max()))
    lm = hessian_eigenvalues(obj, k=3, which="LM", tol=1e-7)
    ref_lm = ev[ev.abs().argsort(descending=True)][:3]
    assert lm == pytest.approx(ref_lm.tolist(), rel=1e-6)


def test_lanczos_residual_bound_is_the_true_residual(mlp_obj):
    h = dense_hessian(mlp_obj)
    for tol in (1e-2, 1e-4):
        r = lanczos(HessianOperator(mlp_obj), k=2, tol=tol, max_iter=60)
        assert r.converged and r.matvecs == r.iterations
        for i in range(2):
            v, lam = r.eigenvectors[:, i], float(r.eigenvalues[i])
            true = float((h @ v - lam * v).norm()) / abs(lam)
            assert true == pytest.approx(float(r.residuals[i]), rel=1e-3, abs=1e-10)
            assert true < tol


def test_lanczos_needs_fewer_products_than_power_iteration():
    eigs = torch.cat([torch.tensor([10.0, 9.0, 8.5]), torch.linspace(-1, 7, 197)]).double()
    a = _sym_with_spectrum(eigs)
    op = CallableOperator.from_matrix(a)
    lz = lanczos(op, k=1, tol=1e-6, max_iter=200)
    pw = power_iteration(op, tol=1e-6, max_iter=2000)
    assert float(lz.eigenvalues[0]) == pytest.approx(10.0, rel=1e-9)
    assert pw.eigenvalue == pytest.approx(10.0, rel=1e-8)
    assert pw.converged and pw.residual < 1e-6
    assert float((a @ pw.eigenvector - pw.eigenvalue * pw.eigenvector).norm()) / 10 == pytest.approx(
        pw.residual
    )
    assert lz.matvecs < pw.matvecs
    assert op.matvecs == lz.matvecs + pw.matvecs


def test_lanczos_not_converged_is_reported():
    a = _sym_with_spectrum(torch.linspace(1, 2, 300).double())
    r = lanczos(CallableOperator.from_matrix(a), k=1, tol=1e-12, max_iter=5)
    assert not r.converged and r.matvecs == 5 and float(r.residuals[0]) > 1e-12


def test_lanczos_invariant_subspace_and_bad_input():
    a = torch.diag(torch.tensor([3.0, 1.0, 1.0, 0.5], dtype=torch.float64))
    r = lanczos(
        CallableOperator.from_matrix(a), k=1, tol=1e-10, v0=torch.tensor([1.0, 1.0, 0.0, 0.0]).double()
    )
    assert r.converged and float(r.eigenvalues[0]) == pytest.approx(3.0) and r.matvecs <= 2
    op = CallableOperator.from_matrix(a)
    with pytest.raises(ConfigError):
        lanczos(op, which="XX")
    with pytest.raises(ConfigError):
        lanczos(op, k=5)
    with pytest.raises(ConfigError):
        lanczos(op, tol=0)


def test_operator_algebra_matches_dense(mlp_obj):
    h = dense_hessian(mlp_obj)
    hop, gop = HessianOperator(mlp_obj), GGNOperator(mlp_obj)
    g = gop.to_dense()
    eye = identity(mlp_obj.num_params, mlp_obj.dtype)
    combo = 2.0 * hop + gop - hop - 0.5 * eye
    assert torch.allclose(
        combo.to_dense(), 2 * h + g - h - 0.5 * torch.eye(len(h), dtype=h.dtype), atol=1e-10
    )
    assert torch.allclose((hop @ hop).to_dense(), h @ h, atol=1e-9)
    assert torch.allclose((-hop).to_dense(), -h, atol=1e-12)
    m = torch.randn(len(h), 3, dtype=torch.float64)
    assert torch.allclose(hop @ m, h @ m, atol=1e-10)
    # The Gauss-Newton matrix is PSD, the Hessian of this (non-interpolating) point need not be.
    assert torch.linalg.eigvalsh(g).min() > -1e-10


def test_sharpness_estimate_and_warm_start_vector(mlp_obj):
    ev = torch.linalg.eigvalsh(dense_hessian(mlp_obj))
    est = sharpness(mlp_obj, tol=1e-6)
    assert est.value == pytest.approx(float(ev[-1]), rel=1e-8)
    assert est.converged and est.residual < 1e-6 and est.matvecs > 0
    v = est.extra["eigenvector"]
    again = sharpness(mlp_obj, tol=1e-6, v0=v)
    assert again.matvecs < est.matvecs
    assert again.value == pytest.approx(est.value, rel=1e-8)
    assert sharpness(mlp_obj, tol=1e-6, seed=3).value == pytest.approx(est.value, rel=1e-8)
    assert sharpness(mlp_obj, seed=1).matvecs == sharpness(mlp_obj, seed=1).matvecs


def _quadratic_1d(a: torch.Tensor) -> Objective:
    """l_i(w) = a_i w^2 / 2: a linear 'network' f_i = sqrt(a_i) w with loss f^2 / 2, so H_i = a_i."""
    net = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        net.weight.fill_(0.3)
    x = a.sqrt().reshape(-1, 1).double()

    def half_square(out: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
        return 0.5 * out.reshape(len(out), -1).pow(2).sum(1)

    return Objective(net, loss=half_square, x=x, y=torch.zeros(len(a), 1, dtype=torch.float64))


def test_subsamples_are_means_over_real_subsets():
    a = torch.tensor([1.0, 2.0, 4.0, 7.0, 11.0, 16.0], dtype=torch.float64)
    obj = _quadratic_1d(a)
    assert sharpness(obj).value == pytest.approx(float(a.mean()))
    est = sharpness(obj, subsamples=5, subsample_size=3, seed=2)
    possible = {round(float(sum(c)) / 3, 9) for c in itertools.combinations(a.tolist(), 3)}
    assert len(est.samples) == 5 and all(round(s, 9) in possible for s in est.samples)
    assert est.value == pytest.approx(sum(est.samples) / 5)
    assert est.std == pytest.approx(float(torch.tensor(est.samples).std()))
    assert est.stderr == pytest.approx(est.std / 5**0.5)
    assert sharpness(obj, subsamples=5, subsample_size=3, seed=2).samples == est.samples
    full = sharpness(obj, subsamples=2, subsample_size=6)
    assert full.std == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ConfigError):
        sharpness(obj, subsamples=2, subsample_size=7)
    with pytest.raises(ConfigError):
        sharpness(obj, subsample_size=3)


def test_probe_warm_start_uses_fewer_products_on_a_slowly_changing_objective():
    torch.manual_seed(7)
    net = nn.Sequential(nn.Linear(5, 20), nn.Tanh(), nn.Linear(20, 3)).double()
    g = torch.Generator().manual_seed(8)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randn(30, 3, generator=g, dtype=torch.float64)
    warm = SharpnessProbe(every=1, tol=1e-6)
    opt = torch.optim.SGD(net.parameters(), lr=0.02)
    warm_mv, cold_mv = [], []
    for step in range(6):
        ctx = SimpleNamespace(model=net, x=x, y=y, loss="mse", step=step, phase=0, lr=0.02, batch_size=30)
        out = warm(ctx)
        cold = SharpnessProbe(every=1, tol=1e-6)(ctx)
        assert out["sharpness"] == pytest.approx(cold["sharpness"], rel=1e-8)
        ref = torch.linalg.eigvalsh(dense_hessian(Objective(net, x=x, y=y)))[-1]
        assert out["sharpness"] == pytest.approx(float(ref), rel=1e-8)
        warm_mv.append(out["sharpness_matvecs"])
        cold_mv.append(cold["sharpness_matvecs"])
        opt.zero_grad()
        nn.MSELoss()(net(x), y).backward()
        opt.step()
    assert sum(warm_mv[1:]) < 0.7 * sum(cold_mv[1:])
    with pytest.raises(ConfigError):
        SharpnessProbe(every=0)
