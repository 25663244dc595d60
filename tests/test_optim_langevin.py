"""SGDL / SGLD: stationary law on a 1-D quadratic, noise schedules, seeding, registry."""

from __future__ import annotations

import math

import pytest
import torch

from flatminima.errors import ConfigError, UnknownNameError
from flatminima.optim import SGDL, SGLD, available, make, noise_at

CHAINS = 4000  # independent 1-D chains = coordinates of one parameter vector (the loss is separable)


def _run(opt_factory, a: float, steps: int) -> torch.Tensor:
    """Run ``steps`` steps on f(x) = (a/2) sum_i x_i^2 from x = 1 and return the final coordinates."""
    x = torch.ones(CHAINS, dtype=torch.float64, requires_grad=True)
    opt = opt_factory([x])
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * a * x.pow(2).sum()).backward()
        opt.step()
    return x.detach()


def _check_variance(samples: torch.Tensor, expected: float) -> None:
    n = samples.numel()
    mean_se = math.sqrt(expected / n)
    assert abs(float(samples.mean())) < 5 * mean_se
    var_se = expected * math.sqrt(2.0 / (n - 1))  # Gaussian samples: Var(s^2) = 2 sigma^4 / (n - 1)
    assert abs(float(samples.var()) - expected) < 5 * var_se


def test_sgld_stationary_variance_is_T_over_a() -> None:
    a, temperature, lr = 2.0, 0.5, 0.01
    x = _run(lambda p: SGLD(p, lr=lr, temperature=temperature, seed=0), a, steps=2000)
    # Exact stationary variance of the discretized chain (AR(1)): 2 lr T / (1 - (1 - lr a)^2)
    # = (T / a) / (1 - lr a / 2) -> T / a as lr -> 0 (1% off here, well inside the 5-sigma band).
    exact = 2 * lr * temperature / (1 - (1 - lr * a) ** 2)
    _check_variance(x, exact)
    _check_variance(x, temperature / a)


def test_sgdl_constant_noise_stationary_variance() -> None:
    a, lr, noise = 1.5, 0.02, 0.05
    x = _run(lambda p: SGDL(p, lr=lr, noise=noise, seed=1), a, steps=1500)
    _check_variance(x, noise**2 / (1 - (1 - lr * a) ** 2))


def test_full_batch_without_noise_is_gradient_descent() -> None:
    x = _run(lambda p: SGDL(p, lr=0.1, noise=0.0), a=1.0, steps=10)
    assert torch.allclose(x, torch.full_like(x, 0.9**10), atol=1e-14)


def test_noise_schedules() -> None:
    assert noise_at("constant", 0.3, 50, 1.0) == 0.3
    assert noise_at("1/t", 0.3, 9, 1.0) == pytest.approx(0.03)
    assert noise_at(lambda t: 1.0 / (t + 2), 0.3, 2, 1.0) == pytest.approx(0.25)
    with pytest.raises(ConfigError):
        SGDL([torch.zeros(2, requires_grad=True)], noise_schedule="cosine")


@pytest.mark.parametrize("schedule", ["1/t", "callable"])
def test_realized_noise_follows_schedule(schedule: str) -> None:
    sched = (lambda t: 0.2 * 0.5**t) if schedule == "callable" else "1/t"
    x = torch.zeros(20000, dtype=torch.float64, requires_grad=True)
    opt = SGDL([x], lr=0.0, noise=0.2, noise_schedule=sched, noise_t0=2.0, seed=3)
    for t in range(4):
        before = x.detach().clone()
        x.grad = torch.zeros_like(x)
        opt.step()
        std = float((x.detach() - before).std())
        expected = noise_at(sched, 0.2, t, 2.0)
        assert abs(std - expected) < 5 * expected / math.sqrt(2 * x.numel())


def test_seeded_noise_is_reproducible() -> None:
    def trajectory(seed: int, use_generator: bool) -> torch.Tensor:
        kw = {"generator": torch.Generator().manual_seed(seed)} if use_generator else {"seed": seed}
        return _run(lambda p: SGLD(p, lr=0.01, temperature=1.0, **kw), a=1.0, steps=5)

    assert torch.equal(trajectory(7, False), trajectory(7, False))
    assert torch.equal(trajectory(7, False), trajectory(7, True))
    assert not torch.equal(trajectory(7, False), trajectory(8, False))


def test_sgld_step_size_decay() -> None:
    x = torch.zeros(1, requires_grad=True)
    opt = SGLD([x], lr=0.5, temperature=0.0, lr_decay=1.0)
    for t in range(3):
        x.grad = torch.ones(1)
        before = float(x.detach())
        opt.step()
        assert before - float(x.detach()) == pytest.approx(0.5 / (1 + t))


def test_registry_and_bad_input() -> None:
    assert {
        "sgdl",
        "sgld",
        "entropy-sgd",
        "entropy-adam",
        "hj-sgd",
        "heat-sgd",
        "trivialized-sgd",
        "parle",
        "elastic-sgd",
    } <= set(available())
    p = [torch.zeros(3, requires_grad=True)]
    assert isinstance(make("sgld", p, lr=0.1, temperature=1e-3), SGLD)
    assert isinstance(make("SGDL", p), SGDL)
    with pytest.raises(UnknownNameError, match="entropy-sgd"):
        make("entropy_sdg", p)
    with pytest.raises(ConfigError):
        make("sgld", p, lr=-1.0)
    with pytest.raises(ConfigError):
        make("sgld", p, not_an_argument=1)
    with pytest.raises(ConfigError):
        SGLD(p, seed=1, generator=torch.Generator())
