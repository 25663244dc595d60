"""Entropy-SGD against closed forms: local-entropy gradient of a quadratic, Cole-Hopf quadrature, scoping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatminima.errors import ConfigError
from flatminima.optim import EntropyAdam, EntropySGD


def _separable_closure(x: torch.Tensor, f):
    """Closure for the loss sum_i f(x_i): every coordinate is an independent 1-D problem (one chain each)."""

    def closure() -> torch.Tensor:
        loss = f(x).sum()
        loss.backward()
        return loss

    return closure


def _smoothed_gradient(opt: EntropySGD, x: torch.Tensor, closure) -> torch.Tensor:
    """With lr = 1 one step moves x by exactly the smoothed gradient d: return d = x_before - x_after."""
    before = x.detach().clone()
    opt.step(closure)
    return before - x.detach()


@pytest.mark.parametrize("temperature", [0.0, 0.3])
def test_local_entropy_gradient_of_quadratic(temperature: float) -> None:
    """f = (a/2)(y - c)^2: rho(y; x) is Gaussian with mean (a c + x / gamma) / (a + 1 / gamma), so
    grad f_gamma(x) = (x - <y>) / gamma = a (x - c) / (1 + a gamma): the curvature is smoothed to
    a / (1 + a gamma)."""
    a, c, gamma, n = 2.0, 0.3, 0.5, 4000
    xs = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64)
    x = xs.repeat_interleave(n).requires_grad_(True)
    opt = EntropySGD(
        [x],
        lr=1.0,
        L=150,
        inner_lr=0.05,
        gamma=gamma,
        alpha=0.0,
        temperature=temperature,
        scale_by_gamma=True,
        seed=0,
    )
    d = _smoothed_gradient(opt, x, _separable_closure(x, lambda y: 0.5 * a * (y - c) ** 2)).view(5, n)
    expected = a * (xs - c) / (1 + a * gamma)
    if temperature == 0.0:
        assert torch.allclose(d[:, 0], expected, atol=1e-10)
    else:
        se = d.std(dim=1) / math.sqrt(n)
        assert torch.all((d.mean(dim=1) - expected).abs() < 5 * se)
    slope = np.polyfit(xs.numpy(), d.mean(dim=1).numpy(), 1)[0]
    assert slope == pytest.approx(a / (1 + a * gamma), rel=0.02)


def test_fixed_point_of_quadratic_is_the_minimum() -> None:
    """Noise-free Entropy-SGD with the gamma^{-1} scaling and lr = 1 contracts x - c by exactly
    1 - a / (1 + a gamma) per outer step (inner loop converged); the fixed point is the minimizer c."""
    a, c, gamma = 3.0, -0.7, 0.2
    x = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    opt = EntropySGD(
        [x], lr=1.0, L=200, inner_lr=0.05, gamma=gamma, alpha=0.0, temperature=0.0, scale_by_gamma=True
    )
    closure = _separable_closure(x, lambda y: 0.5 * a * (y - c) ** 2)
    rate = 1 - a / (1 + a * gamma)
    for k in range(1, 6):
        opt.step(closure)
        assert float(x.detach()) - c == pytest.approx((2.0 - c) * rate**k, rel=1e-8)


def test_gradient_matches_cole_hopf_quadrature() -> None:
    """Double well f = (y^2 - 1)^2 / 4 at temperature T: the viscous-HJ (Cole-Hopf) local entropy
    f_gamma(x) = -T log int exp(-(f(y) + (x - y)^2 / (2 gamma)) / T) dy; its derivative (finite differences of
    the quadrature) must equal the SGLD estimate of (x - <y>) / gamma within sampling error."""
    x0, gamma, temp, n = 0.5, 0.5, 0.2, 16000
    y = np.linspace(-6, 6, 120001)

    def f_gamma(x: float) -> float:
        e = -((y**2 - 1) ** 2 / 4 + (x - y) ** 2 / (2 * gamma)) / temp
        return -temp * (np.log(np.trapezoid(np.exp(e - e.max()), y)) + e.max())

    h = 1e-4
    reference = (f_gamma(x0 + h) - f_gamma(x0 - h)) / (2 * h)
    x = torch.full((n,), x0, dtype=torch.float64, requires_grad=True)
    opt = EntropySGD(
        [x],
        lr=1.0,
        L=1500,
        inner_lr=0.01,
        gamma=gamma,
        alpha=0.0,
        temperature=temp,
        scale_by_gamma=True,
        seed=1,
    )
    d = _smoothed_gradient(opt, x, _separable_closure(x, lambda v: (v**2 - 1) ** 2 / 4))
    se = float(d.std()) / math.sqrt(n)
    assert abs(float(d.mean()) - reference) < 5 * se + 0.01 * abs(reference)  # + O(inner_lr) SGLD bias


def test_exponential_average_weights() -> None:
    """z <- alpha z + (1 - alpha) y from z = x (Alg. 2 lines 1, 5). With a constant gradient g and no
    coupling, y_l = x - l eta g, so x - z = eta g sum_l (1 - alpha) alpha^{L-l} l."""
    g, eta, L = 0.5, 0.1, 4
    for alpha in (0.0, 0.25, 0.75):
        x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = EntropySGD([x], lr=1.0, L=L, inner_lr=eta, coupling=0.0, alpha=alpha, temperature=0.0)
        opt.step(_separable_closure(x, lambda v: g * v))
        expected = eta * g * sum((1 - alpha) * alpha ** (L - l) * l for l in range(1, L + 1))
        assert float(-x.detach()) == pytest.approx(expected, rel=1e-12)


def test_scoping_advances_every_step_in_both_parameterizations() -> None:
    def run(**kw) -> tuple[list[float], torch.Tensor]:
        x = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
        opt = EntropySGD(
            [x], lr=1.0, L=3, inner_lr=0.05, alpha=0.25, temperature=0.0, scale_by_gamma=True, **kw
        )
        gammas = []
        for _ in range(4):
            gammas.append(opt.gamma)
            opt.step(_separable_closure(x, lambda v: v**2))
        return gammas, x.detach()

    g_scope, x_scope = run(gamma=2.0, scoping=0.1)
    assert g_scope == pytest.approx([2.0 * 0.9**k for k in range(4)])
    g_coup, x_coup = run(coupling=0.5, coupling_growth=1 / 0.9 - 1)  # (1 + g1)^-1 = 1 - gamma1
    assert g_coup == pytest.approx(g_scope)
    assert torch.allclose(x_scope, x_coup, atol=1e-12)
    _, x_fixed = run(gamma=2.0)
    assert not torch.allclose(x_scope, x_fixed)  # the schedule changes the iterates
    x = torch.zeros(1, requires_grad=True)
    opt = EntropySGD([x], gamma=1.0, scoping=0.5, inner_lr=0.1, L=1)
    for _ in range(10):
        opt.step(_separable_closure(x, lambda v: v**2))
    assert opt.gamma == pytest.approx(0.1)  # clipped at gamma_min = inner_lr


def test_closure_called_L_times_with_fresh_batches() -> None:
    x = torch.zeros(2, requires_grad=True)
    calls: list[int] = []

    def closure() -> torch.Tensor:
        calls.append(len(calls))
        x.grad = None if calls[-1] % 2 else x.grad  # a closure that does not zero grads is still fine
        loss = (x - float(len(calls))).pow(2).sum()
        loss.backward()
        return loss

    opt = EntropySGD([x], L=7, temperature=0.0)
    loss = opt.step(closure)
    assert len(calls) == 7
    assert float(loss) == pytest.approx(2.0)  # the first call, at x
    with pytest.raises(ConfigError, match="closure"):
        opt.step()
    with pytest.raises(ConfigError):
        EntropySGD([x], gamma=1.0, coupling=1.0)
    with pytest.raises(ConfigError):
        EntropySGD([x], alpha=1.5)
    with pytest.raises(ConfigError):
        EntropyAdam([x], betas=(0.9, 1.2))


def test_seeded_inner_noise_is_reproducible() -> None:
    def final(seed: int) -> torch.Tensor:
        x = torch.zeros(5, dtype=torch.float64, requires_grad=True)
        opt = EntropySGD([x], L=5, temperature=1e-2, seed=seed)
        for _ in range(3):
            opt.step(_separable_closure(x, lambda v: v**2))
        return x.detach()

    assert torch.equal(final(0), final(0))
    assert not torch.equal(final(0), final(1))
