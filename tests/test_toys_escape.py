"""Wu, Ma & E (2018) Sec. 2: SGD (eta = 0.7, B = 1) escapes the minimum x = 1 that GD keeps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flatminima.errors import ConfigError
from flatminima.toys.escape import (
    escape_objective,
    escape_stability,
    losses,
    per_example_curvatures,
    run_escape,
)


def test_curvatures_and_verdicts_in_closed_form() -> None:
    # Per-example curvatures by finite differences of the actual losses (independent of the closed form).
    for x_star in (0.0, 1.0):
        h = 1e-4
        x = torch.tensor([x_star - h, x_star, x_star + h], dtype=torch.float64)
        f = losses(x)
        fd = ((f[2] - 2 * f[1] + f[0]) / h**2).numpy()
        assert np.allclose(fd, per_example_curvatures(x_star), atol=1e-6)
    at0, at1 = escape_stability(0.0), escape_stability(1.0)
    assert (at0.sharpness, at0.non_uniformity) == pytest.approx((2.0, 0.0))
    assert (at1.sharpness, at1.non_uniformity) == pytest.approx((2.0, 1.8))
    assert at0.sgd_factor == pytest.approx((1 - 0.7 * 2) ** 2)
    assert at1.sgd_factor == pytest.approx(0.16 + 0.49 * 1.8**2)
    assert at0.gd_stable and at1.gd_stable and at0.sgd_stable and not at1.sgd_stable
    assert at1.non_uniformity > at1.non_uniformity_bound  # eq. 9 violated: s > sqrt(B (n-1)/(n-B)) / eta
    assert escape_stability(1.0, batch_size=2).sgd_stable  # B = n is GD


def test_linear_stability_through_curvature_engine() -> None:
    curvature = pytest.importorskip("flatminima.curvature")
    if not hasattr(curvature, "linear_stability"):
        pytest.skip("flatminima.curvature.linear_stability not available")
    for x_star in (0.0, 1.0):
        ours = escape_stability(x_star, lr=0.7, batch_size=1)
        fm = curvature.linear_stability(escape_objective(x_star), lr=0.7, batch_size=1)
        assert fm.stable == ours.sgd_stable
        assert fm.sharpness == pytest.approx(ours.sharpness, abs=1e-6)
        assert fm.non_uniformity == pytest.approx(ours.non_uniformity, abs=1e-6)
        assert fm.spectral_value == pytest.approx(ours.sgd_factor, abs=1e-6)


def test_sgd_escapes_and_gd_stays() -> None:
    gd = run_escape(lr=0.7, batch_size=2, steps=200)
    assert abs(gd.x[-1] - 1.0) < 1e-9 and np.all(np.abs(gd.x - 1) <= 1e-5 + 1e-12)
    escaped = 0
    for seed in range(20):
        sgd = run_escape(lr=0.7, batch_size=1, steps=300, seed=seed)
        escaped += abs(sgd.x[-1]) < 1e-6
        if seed == 0:
            burst = int(np.argmax(sgd.loss))
            assert 0 < burst < len(sgd.loss) - 1 and sgd.loss[burst] > 1e3 * sgd.loss[0]
    assert escaped == 20
    with pytest.raises(ConfigError):
        run_escape(batch_size=3)
    with pytest.raises(ConfigError):
        escape_stability(1.0, batch_size=0)
