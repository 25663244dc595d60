"""Thesis Example 6.43: stationary density exp(-Phi) for every lambda, circulation, limit cycles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flatminima.toys import nonequilibrium as ne


def test_rotational_force_is_divergence_free_current() -> None:
    """div(e^{-Phi} j) = lambda div J_ss = 0 (central differences), so exp(-Phi) stays stationary."""
    x = torch.randn(200, 2, dtype=torch.float64)
    h = 1e-5

    def current(z: torch.Tensor) -> torch.Tensor:
        j = ne.drift(z, 1.5) - ne.drift(z, 0.0)  # lambda e^{Phi} J_ss
        return torch.exp(-ne.phi(z)).unsqueeze(1) * j

    e = torch.eye(2, dtype=torch.float64) * h
    div = sum((current(x + e[i])[:, i] - current(x - e[i])[:, i]) / (2 * h) for i in range(2))
    assert float(div.abs().max()) < 1e-8


@pytest.mark.parametrize("lam", ne.LAMBDAS)
def test_density_is_exp_minus_phi_for_every_lambda(lam: float) -> None:
    n = 4000
    res = ne.sample(lam, chains=n, steps=2500, lr=0.01, seed=1)
    x = res.x
    edges = np.linspace(-2.4, 2.4, 17)
    p = ne.marginal_x1(edges)
    counts = np.histogram(x[:, 0].numpy(), edges)[0]
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z).max() < 5
    assert abs(float(x[:, 1].var()) - 1.0) < 5 * math.sqrt(2 / n) + 0.02  # + O(lr) discretization bias
    # Circulation: the mean angular momentum of the drift is lambda times a positive constant.
    am = ne.angular_momentum(x, x + 0.01 * ne.drift(x, lam))
    se = float(am.std()) / math.sqrt(n)
    if lam == 0.0:
        assert abs(float(am.mean())) < 5 * se
    else:
        assert float(am.mean()) > 10 * se


def test_noise_free_flow_minima_shift_and_limit_cycle() -> None:
    starts = torch.tensor([[0.3, 0.2], [-0.2, 0.5], [1.5, 1.5]], dtype=torch.float64)
    end0 = ne.sample(0.0, x0=starts, steps=5000, noise=False).x
    assert torch.allclose(end0.abs(), torch.tensor([1.0, 0.0], dtype=torch.float64).expand(3, 2), atol=1e-6)
    end05 = ne.sample(0.5, x0=starts, steps=5000, noise=False).x
    assert float(ne.drift(end05, 0.5).norm(dim=1).max()) < 1e-6  # converged to a critical point of f ...
    assert (
        float((end05.abs() - torch.tensor([1.0, 0.0], dtype=torch.float64)).norm(dim=1).min()) > 0.1
    )  # moved
    run = ne.sample(1.5, x0=starts, steps=12000, noise=False, trace_every=10, trace_chains=3)
    tail = run.trace[-600:]  # the last 6000 steps
    speed = ne.drift(tail.reshape(-1, 2), 1.5).norm(dim=1)
    assert float(speed.min()) > 0.05  # never comes to rest: no fixed point is reached
    angle = torch.atan2(tail[..., 1], tail[..., 0])
    winding = torch.diff(angle, dim=0)
    winding = (winding + math.pi) % (2 * math.pi) - math.pi
    assert torch.all(winding.sum(0).abs() > 2 * math.pi)  # keeps circling the origin: a limit cycle
    radius = tail.norm(dim=-1)
    assert float(radius.max()) < 1.0 and float(radius.min()) > 0.05
