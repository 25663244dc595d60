"""Theory III Sec. 9.6: GD / SGD from 0 find the min-norm solution; implicit ridge lambda ~ 1 / (eta T)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatminima.errors import ConfigError
from flatminima.toys.minnorm import gd, implicit_ridge_lambda, make_problem, min_norm_solution, ridge, sgd


def test_min_norm_solution_is_the_pseudo_inverse() -> None:
    prob = make_problem()
    w = min_norm_solution(prob)
    assert torch.allclose(w, torch.linalg.pinv(prob.X) @ prob.y, atol=1e-12)
    assert torch.allclose(prob.X @ w, prob.y, atol=1e-12)


def test_gd_and_sgd_from_zero_converge_to_min_norm() -> None:
    prob = make_problem()
    w_dagger = min_norm_solution(prob)
    assert float((gd(prob, 0.9 * prob.max_lr, 3000) - w_dagger).abs().max()) < 1e-8
    assert float((sgd(prob, 1.0, 300, batch_size=1) - w_dagger).abs().max()) < 1e-8
    assert float((sgd(prob, 1.0, 500, batch_size=2, seed=3) - w_dagger).abs().max()) < 1e-8


def test_row_space_complement_is_preserved() -> None:
    prob = make_problem()
    w0 = torch.randn(prob.X.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    null_proj = torch.eye(len(w0), dtype=torch.float64) - torch.linalg.pinv(prob.X) @ prob.X
    expected = min_norm_solution(prob) + null_proj @ w0
    for w in (gd(prob, 0.9 * prob.max_lr, 3000, w0=w0), sgd(prob, 1.0, 300, w0=w0)):
        assert float((w - expected).abs().max()) < 1e-8
        assert float((null_proj @ w - null_proj @ w0).abs().max()) < 1e-12
        assert float(w.norm()) > float(min_norm_solution(prob).norm())  # not the min-norm one


def test_implicit_ridge_parameter_scales_like_one_over_eta_t() -> None:
    prob = make_problem(cond=1e4)
    steps = [10, 30, 100, 300, 1000]
    products = np.array([implicit_ridge_lambda(prob, 1.0, t) * t for t in steps])
    assert np.all((products > 0.3) & (products < 3.0))  # lambda * eta * T = O(1) over two decades of T
    lam = implicit_ridge_lambda(prob, 1.0, 100)
    w_t = gd(prob, 1.0, 100)
    assert float((ridge(prob, lam) - w_t).norm()) < 0.3 * float((min_norm_solution(prob) - w_t).norm())
    with pytest.raises(ConfigError):
        make_problem(n=10, p=5)
