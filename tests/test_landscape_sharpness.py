"""Keskar et al.'s eps-sharpness and Andriushchenko et al.'s adaptive sharpness vs independent references:
closed forms on a least-squares quadratic (where L(w* + delta) - L(w*) = delta^T H delta / 2 exactly), brute
force over the vertices of the box, the trust-region secular equation, and scipy optimisers from many starts
on a tiny tanh net.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import optimize
from torch import nn

import flatminima as fm
from flatminima.errors import ConfigError
from flatminima.landscape import disjoint_batches, keskar_normalization, random_subspace


def _least_squares(n: int = 40, d: int = 6, orthogonal: bool = False, seed: int = 0):
    """A linear model at its least-squares minimum: (objective, w*, H = (2/n) X^T X, X, y)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    if orthogonal:  # orthogonal columns of different lengths: H is diagonal
        q, _ = torch.linalg.qr(x)
        x = q * torch.linspace(1.0, 3.0, d, dtype=torch.float64)
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    w = torch.linalg.lstsq(x, y).solution[:, 0]
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w[None])
    return fm.Objective(model, "mse", x, y), w, 2.0 / n * x.T @ x, x, y


def _vertex_max(h: torch.Tensor, g: torch.Tensor, radius: torch.Tensor) -> float:
    """max over the box |delta_j| <= r_j of g.delta + delta^T h delta / 2 (convex: at a vertex), by brute
    force."""
    best = -math.inf
    for signs in itertools.product([-1.0, 1.0], repeat=len(radius)):
        d = radius * torch.tensor(signs, dtype=torch.float64)
        best = max(best, float(g @ d + 0.5 * d @ h @ d))
    return best


# ------------------------------------------------------------------------------------------ eps-sharpness
def test_eps_sharpness_closed_form_on_a_diagonal_quadratic() -> None:
    obj, w, h, _, _ = _least_squares(orthogonal=True)
    assert torch.allclose(h, torch.diag(torch.diag(h)), atol=1e-12)
    eps = 1e-2
    r = eps * (w.abs() + 1)  # Keskar eq. 3 with A = I
    f = obj.value()
    exact = 100 * (0.5 * float((torch.diag(h) * r**2).sum())) / (1 + f)  # every vertex is a maximiser
    est = fm.epsilon_sharpness(obj, eps=eps)
    assert est.value == pytest.approx(exact, rel=1e-9)
    assert est.extra["loss"] == pytest.approx(f, rel=1e-12)
    assert torch.allclose(est.extra["delta"].abs(), r, rtol=1e-12)  # at a vertex of the box


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_eps_sharpness_vs_brute_force_over_the_box_vertices(offset: float) -> None:
    obj, w, h, _x, _y = _least_squares(d=7)
    w0 = w + offset * torch.linspace(-1, 1, len(w), dtype=torch.float64)  # offset > 0: away from the minimum
    obj = obj.at(w0)
    g = obj.grad()
    eps = 1e-2
    brute = keskar_normalization(obj.value() + _vertex_max(h, g, eps * (w0.abs() + 1)), obj.value())
    one = fm.epsilon_sharpness(obj, eps=eps)
    many = fm.epsilon_sharpness(obj, eps=eps, restarts=40)
    assert one.value <= brute * (1 + 1e-9) and many.value <= brute * (1 + 1e-9)  # never above the max
    # one ascent ends at a vertex where the box's linear maximiser is the vertex itself (a local maximum)
    r = eps * (w0.abs() + 1)
    delta = one.extra["delta"]
    assert torch.allclose(delta.abs(), r, rtol=1e-12)
    assert torch.equal(torch.sign(obj.grad(obj.theta + delta)), torch.sign(delta))
    assert many.value == pytest.approx(brute, rel=1e-9)  # restarts find the global one here


def test_eps_sharpness_random_subspace_vs_brute_force() -> None:
    obj, w, h, _, _ = _least_squares(d=8)
    p, eps = 5, 5e-2
    a = random_subspace(obj.num_params, p, seed=3)
    assert a.shape == (8, 5) and abs(float(a.var()) - 1 / p) < 0.15  # N(0, 1/p) entries
    coords = torch.from_numpy(np.linalg.pinv(a.numpy()) @ w.numpy())  # A^+ x, independently
    r = eps * (coords.abs() + 1)
    top = _vertex_max(a.T @ h @ a, torch.zeros(p, dtype=torch.float64), r)
    brute = keskar_normalization(obj.value() + top, obj.value())
    est = fm.epsilon_sharpness(obj, eps=eps, subspace=p, seed=3, restarts=30)
    assert est.extra["subspace_dim"] == p
    assert est.value == pytest.approx(brute, rel=1e-9)
    same = fm.epsilon_sharpness(obj, eps=eps, subspace=a, restarts=30)  # an explicit A gives the same
    assert same.value == pytest.approx(est.value, rel=1e-12)


def _tiny_net(seed: int = 0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = torch.randn(30, 2, generator=g, dtype=torch.float64)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        return loss

    opt.step(closure)  # near a (local) minimum, as Keskar et al. measure
    return fm.Objective(net, "mse", x, y)


def _scipy_max(
    obj, apply, dim: int, bounds=None, constraints=(), starts: int = 6, seed: int = 0, u0=None
) -> float:
    """Independent reference: scipy (L-BFGS-B on a box, SLSQP on a ball) maximising the loss from many starts
    (the first at ``u0`` if given, else at 0 for the box)."""
    theta = obj.theta.clone()
    rng = np.random.default_rng(seed)

    def neg(u: np.ndarray) -> tuple[float, np.ndarray]:
        ut = torch.tensor(u, dtype=torch.float64, requires_grad=True)
        loss = obj.losses_fn(theta + apply(ut), obj.x, obj.y).mean()
        (gu,) = torch.autograd.grad(loss, ut)
        return -float(loss.detach()), -gu.numpy()

    best = -math.inf
    for k in range(starts):
        if bounds is not None:
            start = rng.uniform([b[0] for b in bounds], [b[1] for b in bounds]) if k else np.zeros(dim)
            start = u0 if (k == 0 and u0 is not None) else start
            res = optimize.minimize(neg, start, jac=True, method="L-BFGS-B", bounds=bounds)
        else:
            start = u0 if (k == 0 and u0 is not None) else rng.normal(size=dim) * 1e-2
            res = optimize.minimize(neg, start, jac=True, method="SLSQP", constraints=constraints)
        if res.success or bounds is not None:
            best = max(best, -float(res.fun))
    return best


def _random_points_max(obj, apply, sampler, count: int = 1000) -> float:
    with torch.no_grad():
        return max(obj.value(obj.theta + apply(sampler())) for _ in range(count))


def test_eps_sharpness_on_a_tiny_net_vs_lbfgsb_and_random_points(tiny_net_objective) -> None:
    obj = tiny_net_objective
    eps = 5e-2
    r = eps * (obj.theta.abs() + 1)
    est = fm.epsilon_sharpness(obj, eps=eps, steps=40, restarts=5)
    f = obj.value()
    ref = _scipy_max(obj, lambda u: r * u, obj.num_params, bounds=[(-1.0, 1.0)] * obj.num_params)
    g = torch.Generator().manual_seed(0)
    vertices = _random_points_max(
        obj, lambda u: r * u, lambda: torch.randint(0, 2, (obj.num_params,), generator=g).double() * 2 - 1
    )
    ours = est.extra["max_loss"]
    assert ours >= vertices  # better than 1000 random vertices of the box
    assert ours >= 0.98 * ref  # at least as good as L-BFGS-B (Keskar's optimiser) from 6 starts, within 2 %
    assert est.value == pytest.approx(keskar_normalization(ours, f), rel=1e-12)
    assert float((est.extra["delta"].abs() - r).max()) <= 1e-12  # feasible


def test_eps_sharpness_bad_input() -> None:
    obj, *_ = _least_squares()
    with pytest.raises(ConfigError):
        fm.epsilon_sharpness(obj, eps=0)
    with pytest.raises(ConfigError):
        fm.epsilon_sharpness(obj, subspace=0)
    with pytest.raises(ConfigError):
        fm.epsilon_sharpness(obj, subspace=torch.zeros(3, 2))
    with pytest.raises(ConfigError):
        fm.epsilon_sharpness(obj, steps=0)


# ----------------------------------------------------------------------------------------- adaptive sharpness
@pytest.mark.parametrize("adaptive", [False, True])
def test_worst_case_l2_closed_form_at_the_minimum(adaptive: bool) -> None:
    obj, w, h, _, _ = _least_squares()
    rho = 0.1
    c = w.abs() if adaptive else torch.ones_like(w)
    exact = rho**2 / 2 * float(np.linalg.eigvalsh((torch.diag(c) @ h @ torch.diag(c)).numpy())[-1])
    est = fm.adaptive_sharpness(obj, rho=rho, norm=2, adaptive=adaptive, steps=100)
    assert est.value == pytest.approx(exact, rel=1e-6)
    assert math.isnan(est.stderr) and est.extra["batches"] == 1


def test_worst_case_linf_closed_form_diagonal() -> None:
    obj, w, h, _, _ = _least_squares(orthogonal=True)
    rho = 0.2
    exact = rho**2 / 2 * float((torch.diag(h) * w**2).sum())  # corner of the box |delta_j| <= rho |w_j|
    est = fm.adaptive_sharpness(obj, rho=rho, norm="inf", adaptive=True)
    assert est.value == pytest.approx(exact, rel=1e-9)


@pytest.mark.parametrize("adaptive", [False, True])
def test_average_case_closed_form(adaptive: bool) -> None:
    obj, w, h, _, _ = _least_squares()
    rho = 0.1
    c = w.abs() if adaptive else torch.ones_like(w)
    exact = rho**2 / 2 * float((torch.diag(h) * c**2).sum())  # E[delta^T H delta] / 2 = rho^2 tr(C H C) / 2
    est = fm.adaptive_sharpness(obj, rho=rho, kind="average", adaptive=adaptive, samples=3000, seed=1)
    assert abs(est.value - exact) < 4 * est.stderr
    assert est.stderr < 0.05 * exact


def _trust_region_max(h: np.ndarray, g: np.ndarray, rho: float) -> float:
    """max_{||d|| <= rho} g.d + d^T h d / 2 for PSD h, from the secular equation
    sum b_i^2 / (mu - l_i)^2 = rho^2."""
    lam, v = np.linalg.eigh(h)
    b = v.T @ g

    def secular(mu: float) -> float:
        return float(np.sum(b**2 / (mu - lam) ** 2) - rho**2)

    lo = lam[-1] + 1e-12
    hi = lam[-1] + np.linalg.norm(b) / rho + 1.0
    mu = optimize.brentq(secular, lo, hi, xtol=1e-15)
    z = b / (mu - lam)
    return float(b @ z + 0.5 * np.sum(lam * z**2))


def test_m_sharpness_is_the_mean_of_per_batch_maxima() -> None:
    obj, w, _, x, y = _least_squares(n=48, d=5)
    rho, m = 0.3, 12
    est = fm.adaptive_sharpness(obj, rho=rho, norm=2, adaptive=False, m=m, steps=200, seed=4)
    expected = []
    for idx in disjoint_batches(48, m, seed=4):
        xs, ys = x[idx].numpy(), y[idx].numpy()[:, 0]
        hs = 2.0 / m * xs.T @ xs
        gs = 2.0 / m * xs.T @ (xs @ w.numpy() - ys)  # the batch gradient is not 0 at the full-data minimum
        expected.append(_trust_region_max(hs, gs, rho))
    assert est.extra["batches"] == 4 and est.extra["m"] == m
    assert est.samples == pytest.approx(expected, rel=1e-6)
    assert est.value == pytest.approx(np.mean(expected), rel=1e-6)
    assert est.stderr == pytest.approx(np.std(expected, ddof=1) / 2, rel=1e-5)
    assert sorted(torch.cat(disjoint_batches(48, m, 4)).tolist()) == list(range(48))  # disjoint, all used


@pytest.fixture(scope="module")
def tiny_net_objective():
    return _tiny_net(seed=5)


@pytest.mark.parametrize("norm", ["2", "inf"])
def test_worst_case_on_a_tiny_net_vs_scipy_from_many_starts(norm: str, tiny_net_objective) -> None:
    obj = tiny_net_objective
    rho = 0.1
    c = obj.theta.abs()
    est = fm.adaptive_sharpness(obj, rho=rho, norm=norm, adaptive=True, steps=60, restarts=4)
    base = obj.value()
    dim = obj.num_params
    g = torch.Generator().manual_seed(1)
    u = (est.extra["delta"] / c).numpy()  # our maximiser in the scaled variable
    if norm == "inf":
        box = {"bounds": [(-rho, rho)] * dim}
        sampler = lambda: (torch.randint(0, 2, (dim,), generator=g).double() * 2 - 1) * rho  # noqa: E731
    else:
        box = {"constraints": ({"type": "ineq", "fun": lambda u: rho**2 - u @ u, "jac": lambda u: -2 * u},)}
        assert np.linalg.norm(u) <= rho * (1 + 1e-12)

        def sampler():
            z = torch.randn(dim, generator=g, dtype=torch.float64)
            return z / z.norm() * rho

    ref = _scipy_max(obj, lambda u: c * u, dim, starts=4, **box)
    refined = _scipy_max(obj, lambda u: c * u, dim, starts=1, u0=u, **box)
    rand = _random_points_max(obj, lambda u: c * u, sampler)
    ours = est.value + base
    assert ours >= rand
    assert refined <= ours * (1 + 1e-3)  # a local maximum: scipy started there does not climb further
    assert ours >= 0.95 * ref  # comparable to scipy's best of as many starts (either may be higher)


def test_adaptive_sharpness_bad_input() -> None:
    obj, *_ = _least_squares()
    with pytest.raises(ConfigError):
        fm.adaptive_sharpness(obj, rho=-1)
    with pytest.raises(ConfigError):
        fm.adaptive_sharpness(obj, norm=1)
    with pytest.raises(ConfigError):
        fm.adaptive_sharpness(obj, kind="best")
    with pytest.raises(ConfigError):
        fm.adaptive_sharpness(obj, m=0)
    with pytest.raises(ConfigError):
        fm.adaptive_sharpness(obj, kind="average", samples=0)
