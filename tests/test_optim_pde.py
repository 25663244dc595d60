"""HJ and HEAT against the reference smoothings in 1-D (Hopf-Lax and Gaussian convolution quadrature), and
Trivialized-SGD's annealed random field (thesis Algorithm 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from flatminima.optim import HJSGD, HeatSGD, TrivializedSGD
from flatminima.optim.trivialized import field_scale


def _f(v):
    """A non-convex 1-D test function (torch or numpy): tilted double well with a ripple."""
    lib = torch if isinstance(v, torch.Tensor) else np
    return (v**2 - 1) ** 2 / 4 + 0.2 * v + 0.1 * lib.sin(3 * v)


def _closure(x: torch.Tensor, f=_f):
    def closure() -> torch.Tensor:
        loss = f(x).sum()
        loss.backward()
        return loss

    return closure


def _step_direction(opt, x: torch.Tensor, closure) -> torch.Tensor:
    before = x.detach().clone()
    opt.step(closure)
    return (before - x.detach()) / opt.param_groups[0]["lr"]


def test_hj_step_is_gradient_of_hopf_lax_envelope() -> None:
    """u(x, gamma) = min_y f(y) + (x - y)^2 / (2 gamma) by brute-force minimization on a grid; its derivative
    (finite differences) must equal (x - y_L) / gamma from the noise-free proximal inner loop."""
    gamma = 0.4  # f'' >= -1 + small, so y -> f(y) + |y - x|^2 / (2 gamma) is strictly convex: unique prox
    xs = np.linspace(-2.0, 2.0, 9)
    y = np.linspace(-5, 5, 400001)

    def u(x: float) -> float:
        return float(np.min(_f(y) + (x - y) ** 2 / (2 * gamma)))

    h = 1e-3
    reference = np.array([(u(x + h) - u(x - h)) / (2 * h) for x in xs])
    x = torch.tensor(xs, dtype=torch.float64, requires_grad=True)
    opt = HJSGD([x], lr=1.0, L=600, inner_lr=0.05, gamma=gamma)
    d = _step_direction(opt, x, _closure(x)).numpy()
    assert np.allclose(d, reference, atol=2e-4)


def test_hj_quadratic_closed_form() -> None:
    """f = c y^2 / 2: u(x, t) = x^2 / (2 (t + 1/c)), so grad u = x / (t + 1/c)."""
    c, gamma = 3.0, 0.5
    x = torch.linspace(-1, 1, 7, dtype=torch.float64).requires_grad_(True)
    xs = x.detach().clone()
    opt = HJSGD([x], lr=1.0, L=400, inner_lr=0.05, gamma=gamma)
    d = _step_direction(opt, x, _closure(x, lambda v: 0.5 * c * v**2))
    assert torch.allclose(d, xs / (gamma + 1 / c), atol=1e-10)
    assert HJSGD([x]).L == 5 and HJSGD([x]).temperature == 0.0 and HJSGD([x]).alpha == 0.0


def test_heat_expected_step_is_gradient_of_gaussian_smoothing() -> None:
    """E grad f(x + eps), eps ~ N(0, gamma), equals d/dx (G_gamma * f)(x); the convolution is computed by
    quadrature and differentiated by finite differences. Each coordinate draws its own perturbation, so the
    mean over coordinates of one HEAT step estimates the expectation."""
    gamma, n = 0.3, 20000
    xs = [-1.2, 0.1, 0.9]
    s = np.linspace(-8 * math.sqrt(gamma), 8 * math.sqrt(gamma), 20001)
    kernel = np.exp(-(s**2) / (2 * gamma)) / math.sqrt(2 * math.pi * gamma)

    def smoothed(x: float) -> float:
        return float(np.trapezoid(_f(x + s) * kernel, s))

    h = 1e-4
    x = torch.tensor(xs, dtype=torch.float64).repeat_interleave(n).requires_grad_(True)
    opt = HeatSGD([x], lr=1.0, L=4, gamma=gamma, seed=0)
    d = _step_direction(opt, x, _closure(x)).view(len(xs), n)
    for i, x0 in enumerate(xs):
        reference = (smoothed(x0 + h) - smoothed(x0 - h)) / (2 * h)
        se = float(d[i].std()) / math.sqrt(n)
        assert abs(float(d[i].mean()) - reference) < 5 * se
    unsmoothed = [float(torch.func.grad(lambda v: _f(v))(torch.tensor(x0, dtype=torch.float64))) for x0 in xs]
    assert any(
        abs(float(d[i].mean()) - unsmoothed[i]) > 10 * float(d[i].std()) / math.sqrt(n) for i in range(3)
    )


def test_heat_scoping_and_call_count() -> None:
    x = torch.zeros(3, requires_grad=True)
    calls = []

    def closure() -> torch.Tensor:
        calls.append(1)
        loss = x.pow(2).sum()
        loss.backward()
        return loss

    opt = HeatSGD([x], gamma=1.0, scoping=0.5)
    opt.step(closure)
    opt.step(closure)
    assert len(calls) == 40 and opt.gamma == pytest.approx(0.25)
    assert not torch.equal(x.detach(), torch.zeros(3))


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Linear(3, 2)
    )


def test_trivialized_field_schedule_and_update() -> None:
    """Algorithm 1: h ~ J sqrt(p (p - 2)) N(0, I) drawn once, h_i = (1 + 2 tau_i / N)^{1/2} h with
    tau_i = n (exp(-i / tau0) - 1/2); with zero loss gradient the update is exactly -lr h_i."""
    net = _net()
    params = list(net.parameters())
    weights = sum(p.numel() for p in params)
    opt = TrivializedSGD(params, lr=0.1, J=0.5, tau0=3.0, seed=0)
    assert opt.layers == 4
    assert opt.n_eff == pytest.approx(math.sqrt(weights / 4))
    assert opt.nu_c == pytest.approx(0.5 * math.sqrt(8))
    flat = lambda: torch.cat([p.detach().reshape(-1) for p in params])  # noqa: E731
    moves = []
    for i in range(4):
        before = flat()
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        moves.append((before - flat()) / 0.1)
        assert field_scale(i, 3.0, opt.n_eff, opt.n_eff) == pytest.approx(math.sqrt(2 * math.exp(-i / 3.0)))
    h = moves[0] / field_scale(0, 3.0, opt.n_eff, opt.n_eff)
    for i, m in enumerate(moves):  # one fixed field, rescaled
        assert torch.allclose(m, h * field_scale(i, 3.0, opt.n_eff, opt.n_eff), atol=1e-6)
    z = h / opt.nu_c  # standard Gaussian entries
    assert abs(float(z.std()) - 1.0) < 5 / math.sqrt(2 * z.numel())
    assert field_scale(10**6, 3.0, 10.0, 5.0) == 0.0  # n > N: clipped at zero
