"""Results that explain themselves (issue 14): eigenvalue results with residuals and vectors, one
convergence warning everywhere, progress callbacks, input checks before any product, the robust stability
default, the GGN memory guard and block products."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import flatminima as fm
from flatminima import ConfigError, ConvergenceWarning, Objective
from flatminima.curvature import (
    CallableOperator,
    HessianOperator,
    SharpnessProbe,
    hessian_eigenvalues,
    hessian_trace,
    linear_stability,
    local_entropy_width,
    non_uniformity,
    sharpness,
    spectral_density,
    spectrum_summary,
)
from flatminima.curvature.density import slq
from flatminima.curvature.jacobian_gram import jacobian_gram_blocks
from flatminima.curvature.sigma import GGNMoments, moments
from flatminima.curvature.trace import hutchinson, hutchpp

from .dense import dense_hessian
from .test_curvature_eigen import one_thread  # noqa: F401  (fixture)


@pytest.fixture(name="obj")
def obj_fixture(tiny_mlp, tiny_data) -> Objective:
    x, y = tiny_data
    return Objective(tiny_mlp, loss="mse", x=x, y=y)


def test_eigenvalue_result_is_the_old_list_plus_residuals_and_vectors(obj):
    h = dense_hessian(obj)
    exact = torch.linalg.eigvalsh(h).flip(0)[:3]
    r = hessian_eigenvalues(obj, k=3, tol=1e-9, return_vectors=True)
    assert isinstance(r, list) and len(r) == 3 and r == r.values and r[0] == r.values[0]
    assert [round(v, 6) for v in r] == [round(float(e), 6) for e in exact]
    assert r.converged and max(r.residuals) < 1e-9 and r.matvecs > 0 and r.which == "LA"
    assert r.vectors.shape == (obj.num_params, 3)
    for j in range(3):  # the vectors are eigenvectors of the dense Hessian
        v = r.vectors[:, j]
        assert float((h @ v - r[j] * v).norm()) < 1e-7 * abs(r[j])
    assert hessian_eigenvalues(obj, k=2).vectors is None
    assert "residual" in repr(r) and r.to_dict()["values"] == r.values


@pytest.mark.parametrize(
    "call",
    [
        lambda o: sharpness(o, tol=1e-12, max_iter=2),
        lambda o: hessian_eigenvalues(o, k=3, tol=1e-12, max_iter=4),
        lambda o: non_uniformity(o, method="exact", tol=1e-12, max_iter=2),
        lambda o: linear_stability(o, lr=0.1, batch_size=2, tol=1e-12, max_iter=2, components=False),
        lambda o: spectral_density(o, steps=2, runs=2),
        lambda o: local_entropy_width(o, gamma=10.0, steps=2, runs=3),
        lambda o: spectrum_summary(o, steps=30, runs=2, tol=1e-12, max_iter=2, method="slq"),
        lambda o: SharpnessProbe(tol=1e-12, max_iter=2, loss="mse")(_ctx(o)),
    ],
    ids=["sharpness", "eigenvalues", "nonuniformity", "stability", "density", "entropy", "summary", "probe"],
)
def test_every_measurement_warns_the_same_way_when_not_converged(obj, call):
    with pytest.warns(ConvergenceWarning, match="not converged"):
        call(obj)


def _ctx(obj: Objective):
    from types import SimpleNamespace

    return SimpleNamespace(model=obj.model, x=obj.x, y=obj.y, loss="mse")


def test_converged_measurements_do_not_warn(obj):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sharpness(obj, tol=1e-8)
        non_uniformity(obj, method="exact", tol=1e-8)
        spectral_density(obj, steps=obj.num_params, runs=2)
        local_entropy_width(obj, gamma=10.0, steps=obj.num_params, runs=3)


@pytest.mark.parametrize(
    "call, total",
    [
        (lambda o, p: sharpness(o, tol=1e-8, max_iter=40, progress=p), 40),
        (lambda o, p: hessian_trace(o, matvecs=12, progress=p), 12),
        (lambda o, p: spectral_density(o, steps=5, runs=3, progress=p), 15),
        (lambda o, p: non_uniformity(o, method="exact", tol=1e-8, max_iter=40, progress=p), 40),
    ],
    ids=["sharpness", "trace", "density", "nonuniformity"],
)
def test_progress_callback_counts_products(obj, call, total):
    seen: list[tuple[int, int]] = []
    est = call(obj, lambda done, tot: seen.append((done, tot)))
    assert seen and all(t == total for _, t in seen)
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == est.matvecs
    call(obj, True)  # a rich bar (to the captured console) must not break anything


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda o: sharpness(o, tol=math.nan), "tol"),
        (lambda o: sharpness(o, tol=0), "tol"),
        (lambda o: sharpness(o, max_iter=0), "max_iter"),
        (lambda o: sharpness(o, v0=torch.ones(3, dtype=torch.float64)), "v0"),
        (lambda o: sharpness(o, subsamples=0), "subsamples"),
        (lambda o: hessian_eigenvalues(o, k=0), "k must"),
        (lambda o: hessian_eigenvalues(o, k=10**6), "k must"),
        (lambda o: hessian_eigenvalues(o, tol=-1.0), "tol"),
        (lambda o: hessian_trace(o, matvecs=1), "matvecs"),
        (lambda o: hessian_trace(o, subsamples=0), "subsamples"),
        (lambda o: spectrum_summary(o, threshold=-1), "threshold"),
        (lambda o: spectral_density(o, steps=0), "steps"),
        (lambda o: non_uniformity(o, tol=math.inf), "tol"),
        (lambda o: non_uniformity(o, v0=torch.ones(2)), "v0"),
        (lambda o: linear_stability(o, lr=0.1, batch_size=2, tol=math.nan), "tol"),
        (lambda o: local_entropy_width(o, gamma=-1.0), "gamma"),
    ],
)
def test_bad_input_is_rejected_before_any_product(obj, call, match):
    def refuse(*args, **kwargs):
        raise AssertionError("a product was computed before the input was checked")

    obj.hvp = refuse
    obj.ggn_vp = refuse
    with pytest.raises(ConfigError, match=match):
        call(obj)


def test_block_products_match_single_products_and_keep_the_same_vectors(obj):
    h = dense_hessian(obj)
    op = HessianOperator(obj)
    v = torch.randn(obj.num_params, 7, dtype=torch.float64)
    assert torch.allclose(op.matmat(v), h @ v, atol=1e-10) and op.matvecs == 7
    # Split into column blocks of at most 3 (3 + 3 + 1): products and forms v_j^T H v_j still match H.
    op.max_block = 3
    assert torch.allclose(op.matmat(v), h @ v, atol=1e-10)
    assert torch.allclose(op.quadratic_forms(v), (v * (h @ v)).sum(0), atol=1e-10) and op.matvecs == 21
    assert op.quadratic_forms(v[:, :0]).shape == (0,) and op.matvecs == 21
    # The estimators draw the same Rademacher vectors whatever the block size: identical values.
    plain = CallableOperator(lambda u: h @ u, len(h), h.dtype)
    blocked = CallableOperator(lambda u: h @ u, len(h), h.dtype, block_fn=lambda u: h @ u)
    blocked.max_block = 4
    for fn in (hutchinson, hutchpp):
        a, b = fn(plain, matvecs=21, seed=3), fn(blocked, matvecs=21, seed=3)
        assert a.value == pytest.approx(b.value, rel=1e-12)
        assert a.samples == pytest.approx(b.samples, rel=1e-12)
    # SLQ runs in lockstep (one block product per step) = one after the other.
    together = slq(blocked, steps=6, runs=5, seed=1)
    apart = slq(blocked, steps=6, runs=5, seed=1, memory_budget=1)
    assert np.allclose(together[0], apart[0], atol=1e-12) and np.allclose(together[1], apart[1], atol=1e-12)


def test_density_repr_is_short(obj):
    d = spectral_density(obj, steps=8, runs=2)
    text = repr(d)
    assert len(text) < 250 and "runs=2" in text and "steps=8" in text
    assert "array" not in text and "[[" not in text and str(d) == text  # no array is dumped, print() alike


def test_ggn_memory_guard_groups_examples_and_falls_back_when_blocks_do_not_fit(obj):
    full = jacobian_gram_blocks(obj, obj.x)
    assert torch.allclose(jacobian_gram_blocks(obj, obj.x, max_examples=3), full, atol=1e-14)
    engine = GGNMoments(obj)
    assert engine.memory["examples_at_once"] == obj.n and engine.memory["blocks_bytes"] == 3 * 9 * 8 * obj.n
    per = engine.memory["sensitivity_bytes_per_example"]
    small = GGNMoments(obj, memory_budget=engine.memory["blocks_bytes"] + 2 * per)
    assert small.memory["examples_at_once"] == 2
    v = torch.randn(obj.num_params, dtype=torch.float64)
    assert torch.allclose(small.combo(v, 0.0, -1.0, 1.0), engine.combo(v, 0.0, -1.0, 1.0), atol=1e-12)
    with pytest.warns(RuntimeWarning, match="memory_budget"):
        fallback = moments(obj, "ggn", memory_budget=100)
    assert fallback.method == "exact"
    with pytest.warns(RuntimeWarning, match="memory_budget"):
        est = non_uniformity(obj, method="ggn", tol=1e-8, memory_budget=100)
    assert est.extra["method"] == "exact" and "ggn -> exact" in est.extra["method_reason"]
    assert est.value == pytest.approx(non_uniformity(obj, method="exact", tol=1e-8).value, rel=1e-7)


def _gd_digits(lr: float, steps: int) -> Objective:
    """The README's stability example, scaled down: GD on digits (MSE, one-hot), MLP 16-16, n = 200."""
    ds = fm.data.load("digits", n_train=200, targets="onehot", seed=0)
    torch.manual_seed(0)
    model = fm.models.build("mlp", input_shape=ds.input_shape, num_classes=ds.num_classes, widths=[16, 16])
    model = model.double()
    x, y = ds.train.x.double(), ds.train.y.double()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
    return Objective(model, loss="mse", x=x, y=y)


def test_stability_auto_does_not_call_an_inexact_gd_minimum_unstable():
    obj = _gd_digits(lr=0.5, steps=300)  # a < 2/lr, loss ratio > 1e-3: auto used to pick the exact Hessian
    a = sharpness(obj, tol=1e-6).value
    assert a < 2 / 0.5
    exact = linear_stability(obj, lr=0.5, batch_size=obj.n, method="exact", components=False)
    assert not exact.stable and exact.spectral_value > 1.001  # the old default's false "unstable" ...
    assert exact.verdict == "marginal" and exact.extra["negative_curvature"] < 0 and "remedy" in exact.extra
    auto = linear_stability(obj, lr=0.5, batch_size=obj.n, components=False)
    assert auto.stable and auto.verdict == "stable" and auto.method == "ggn"  # ... is gone
    assert "negative curvature" in auto.extra["method_reason"]
    # A real instability is not masked: lr above 2/a.
    unstable = linear_stability(obj, lr=2.5 / a, batch_size=obj.n, components=False)
    assert not unstable.stable and unstable.verdict == "unstable"
