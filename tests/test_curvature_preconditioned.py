"""Preconditioned sharpness lambda_max(P^{-1} H) against a dense float64 Hessian with an explicit diagonal P,
P rebuilt by hand from Adam / RMSprop states, and the stability thresholds against simulated linear
recurrences of the momentum methods."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import flatminima as fm
from flatminima.curvature import preconditioner_from_state, stability_threshold
from flatminima.errors import ConfigError

from .dense import dense_hessian


def _trained(opt_cls, steps: int = 5, **kw):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    y = torch.randn(10, 3, generator=g, dtype=torch.float64)
    opt = opt_cls(net.parameters(), **kw)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return net, opt, fm.Objective(net, "mse", x, y)


def _top(h: torch.Tensor, p: torch.Tensor) -> float:
    s = torch.diag(p.rsqrt())
    sym = float(np.linalg.eigvalsh((s @ h @ s).numpy())[-1])
    nonsym = float(np.max(np.linalg.eigvals((torch.diag(1 / p) @ h).numpy()).real))  # lambda_max(P^-1 H)
    assert sym == pytest.approx(nonsym, rel=1e-9)  # similar matrices
    return sym


def test_explicit_diagonal_preconditioner_matches_dense() -> None:
    _net, _, obj = _trained(torch.optim.SGD, steps=0, lr=0.1)
    h = dense_hessian(obj)
    p = torch.linspace(0.05, 3.0, obj.num_params, dtype=torch.float64)
    est = fm.preconditioned_sharpness(obj, preconditioner=p, lr=0.01, tol=1e-10, max_iter=obj.num_params)
    assert est.value == pytest.approx(_top(h, p), rel=1e-8)
    assert est.extra["threshold"] == pytest.approx(2 / 0.01)  # no momentum: 2/eta (Wu, Ma & E 2018 Sec. 5)
    assert est.extra["stable"] == (est.value <= 200.0)
    assert est.matvecs > 0 and est.residual < 1e-8
    # without P it is the sharpness
    ones = fm.preconditioned_sharpness(
        obj, preconditioner=torch.ones_like(p), tol=1e-10, max_iter=obj.num_params
    )
    assert ones.value == pytest.approx(float(np.linalg.eigvalsh(h.numpy())[-1]), rel=1e-8)
    assert math.isnan(ones.extra["threshold"]) and ones.extra["stable"] is None


def _adam_p(net, opt) -> torch.Tensor:
    beta2, eps = opt.param_groups[0]["betas"][1], opt.param_groups[0]["eps"]
    parts = []
    for prm in net.parameters():
        st = opt.state[prm]
        t = int(st["step"])
        parts.append(((st["exp_avg_sq"] / (1 - beta2**t)).sqrt() + eps).reshape(-1))
    return torch.cat(parts)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_state_and_threshold(amsgrad: bool) -> None:
    lr = 0.01
    net, opt, obj = _trained(torch.optim.Adam, lr=lr, betas=(0.9, 0.99), eps=1e-3, amsgrad=amsgrad)
    p = (
        _adam_p(net, opt)
        if not amsgrad
        else torch.cat(
            [
                ((opt.state[q]["max_exp_avg_sq"] / (1 - 0.99**5)).sqrt() + 1e-3).reshape(-1)
                for q in net.parameters()
            ]
        )
    )
    pre = preconditioner_from_state(obj, opt)
    assert torch.allclose(pre.diagonal, p, rtol=1e-12)
    h = dense_hessian(obj)
    est = fm.preconditioned_sharpness(obj, opt, tol=1e-10, max_iter=obj.num_params)
    assert est.value == pytest.approx(_top(h, p), rel=1e-8)
    assert est.extra["threshold"] == pytest.approx((2 + 2 * 0.9) / (lr * 0.1))  # 38 / eta
    assert est.extra["optimizer"] == "adam" and est.extra["step"] == 5
    from_sd = fm.preconditioned_sharpness(obj, opt.state_dict(), tol=1e-10, max_iter=obj.num_params)
    assert from_sd.value == pytest.approx(est.value, rel=1e-12)  # the state_dict path maps the same params


def test_adam_l2_weight_decay_is_curvature_adamw_is_not() -> None:
    net, opt, obj = _trained(torch.optim.Adam, lr=0.01, weight_decay=0.5, eps=1e-3)
    h = dense_hessian(obj)
    p = _adam_p(net, opt)
    est = fm.preconditioned_sharpness(obj, opt, tol=1e-10, max_iter=obj.num_params)
    assert est.value == pytest.approx(_top(h + 0.5 * torch.eye(len(p), dtype=h.dtype), p), rel=1e-8)
    net, opt, obj = _trained(torch.optim.AdamW, lr=0.01, weight_decay=0.5, eps=1e-3)
    est = fm.preconditioned_sharpness(obj, opt, tol=1e-10, max_iter=obj.num_params)
    assert est.extra["optimizer"] == "adamw" and est.extra["decoupled_weight_decay"] == 0.5
    assert est.value == pytest.approx(_top(dense_hessian(obj), _adam_p(net, opt)), rel=1e-8)


def test_rmsprop_centered_with_momentum() -> None:
    lr = 0.01
    net, opt, obj = _trained(torch.optim.RMSprop, lr=lr, alpha=0.9, eps=1e-3, momentum=0.5, centered=True)
    p = torch.cat(
        [
            ((opt.state[q]["square_avg"] - opt.state[q]["grad_avg"] ** 2).sqrt() + 1e-3).reshape(-1)
            for q in net.parameters()
        ]
    )
    est = fm.preconditioned_sharpness(obj, opt.state_dict(), tol=1e-10, max_iter=obj.num_params)
    assert est.value == pytest.approx(_top(dense_hessian(obj), p), rel=1e-8)
    assert est.extra["threshold"] == pytest.approx((2 + 2 * 0.5) / lr)  # heavy ball
    assert est.extra["momentum_style"] == "heavy-ball"


def _grows(step, lam: float, steps: int = 4000) -> bool:
    """Run a 1-D linear recurrence on f = lam x^2 / 2 from x = 1; True if |x| ends above 1."""
    x, buf = 1.0, 0.0
    for _ in range(steps):
        x, buf = step(x, buf, lam * x)
        if abs(x) > 1e6:
            return True
    return abs(x) > 1.0


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_thresholds_match_the_linear_recurrences(beta: float) -> None:
    eta = 0.1
    ema = stability_threshold(eta, beta, "ema")

    def adam_like(x, m, g):  # m <- beta m + (1 - beta) g; x <- x - eta m (frozen preconditioner)
        m = beta * m + (1 - beta) * g
        return x - eta * m, m

    assert not _grows(adam_like, 0.98 * ema) and _grows(adam_like, 1.02 * ema)
    heavy = stability_threshold(eta, beta, "heavy-ball")

    def heavy_ball(x, b, g):  # b <- beta b + g; x <- x - eta b
        b = beta * b + g
        return x - eta * b, b

    assert not _grows(heavy_ball, 0.98 * heavy) and _grows(heavy_ball, 1.02 * heavy)
    if beta == 0.9:
        assert ema == pytest.approx(38 / eta)


def test_bad_optimizer_states() -> None:
    net, opt, obj = _trained(torch.optim.SGD, lr=0.1, momentum=0.9)
    with pytest.raises(ConfigError, match="Adam, AdamW or RMSprop"):
        fm.preconditioned_sharpness(obj, opt)
    with pytest.raises(ConfigError, match="not an Adam"):
        fm.preconditioned_sharpness(obj, opt.state_dict())
    fresh = torch.optim.Adam(net.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="taken a step"):
        fm.preconditioned_sharpness(obj, fresh.state_dict())
    _, adam, _ = _trained(torch.optim.Adam, lr=0.01)
    sd = adam.state_dict()
    sd["param_groups"][0]["params"] = sd["param_groups"][0]["params"][:2]
    with pytest.raises(ConfigError, match="trainable"):
        fm.preconditioned_sharpness(obj, sd)
    with pytest.raises(ConfigError):
        fm.preconditioned_sharpness(obj)
    with pytest.raises(ConfigError):
        fm.preconditioned_sharpness(obj, preconditioner=-torch.ones(obj.num_params, dtype=torch.float64))
