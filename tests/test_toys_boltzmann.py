"""Toy potentials: exact Boltzmann occupancies vs numerical integration, and the Langevin sampler vs both."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from flatminima.errors import ConfigError
from flatminima.toys import (
    basin_shares,
    bin_probabilities,
    degenerate_valley_potential,
    effective_temperature,
    grid_shares,
    langevin_sample,
    two_basin_potential,
    well_cdf,
)

CHAINS, STEPS, LR = 4000, 2500, 0.02


def _share_z(samples: torch.Tensor, split: float, p: float) -> float:
    """z-score of the sampled share of x_1 < split against the exact probability p (binomial error)."""
    share = float((samples[:, 0] < split).double().mean())
    return (share - p) / math.sqrt(p * (1 - p) / len(samples))


def _max_bin_z(x1: np.ndarray, pot, edges: np.ndarray) -> float:
    p = bin_probabilities(pot, edges)
    counts = np.histogram(x1, edges)[0]
    n = len(x1)
    keep = n * p > 5
    return float(np.max(np.abs(counts[keep] - n * p[keep]) / np.sqrt(n * p[keep] * (1 - p[keep]))))


@pytest.mark.parametrize(
    ("w", "k", "t", "s"), [(0.0, 2.0, 1.0, 0.3), (1.0, 8.0, 0.5, -1.4), (0.5, 1.0, 2.0, 0.2)]
)
def test_well_cdf_matches_quadrature(w: float, k: float, t: float, s: float) -> None:
    def density(u: float) -> float:
        return math.exp(-0.5 * k * max(abs(u) - w, 0.0) ** 2 / t)

    assert float(well_cdf(s, w, k, t)) == pytest.approx(
        quad(density, -40.0, s, points=[q for q in (-w, w) if -40 < q < s] or None)[0], rel=1e-8
    )
    assert float(well_cdf(np.inf, w, k, t)) == pytest.approx(2 * w + math.sqrt(2 * math.pi * t / k))


@pytest.mark.parametrize(
    "pot", [two_basin_potential(1), two_basin_potential(2), degenerate_valley_potential()]
)
def test_exact_shares_match_grid_integration(pot) -> None:
    """The separable closed form agrees with brute-force integration of exp(-U/T) of the actual potential."""
    assert basin_shares(pot) == pytest.approx(grid_shares(pot, points=1601), abs=2e-3)


def test_flat_share_grows_with_dimension() -> None:
    shares = [basin_shares(two_basin_potential(d))[0] for d in range(1, 6)]
    assert all(b > a for a, b in itertools.pairwise(shares))
    for t in (
        0.02,
        1e-4,
    ):  # cold: no mass crosses x_1 = 0, share = Z_flat / Z with Z_flat / Z_sharp = ratio^d
        s = math.sqrt(2 * math.pi * t / 8.0)
        for d in range(1, 6):
            ratio = ((2 * 1.0 + s) / (2 * 0.5 + s)) ** d
            assert basin_shares(two_basin_potential(d, temperature=t))[0] == pytest.approx(
                ratio / (1 + ratio)
            )
    cold = basin_shares(two_basin_potential(5, temperature=1e-6))[0]
    assert cold == pytest.approx(2**5 / (1 + 2**5), abs=1e-3)  # the volume ratio 2^d of Theory IIb


def test_gradient_matches_autograd() -> None:
    pot = degenerate_valley_potential(d=3)
    x = torch.randn(64, 3, dtype=torch.float64, requires_grad=True) * 2
    (g,) = torch.autograd.grad(pot.energy(x).sum(), x)
    assert torch.allclose(pot.grad(x.detach()), g, atol=1e-12)


@pytest.fixture(scope="module")
def gdl_samples() -> dict[int, torch.Tensor]:
    """GDL on the two-basin potentials, every chain started in the SHARP minimum (so the test also checks that
    the chains equilibrate across the barrier)."""
    out = {}
    for d in range(1, 6):
        pot = two_basin_potential(d)
        x0 = torch.zeros(CHAINS, d, dtype=torch.float64)
        x0[:, 0] = pot.centers[1, 0]
        out[d] = langevin_sample(pot.force, x0, LR, STEPS, temperature=pot.temperature, seed=d).x
    return out


@pytest.mark.parametrize("d", [1, 2, 3, 4, 5])
def test_gdl_basin_shares_match_boltzmann(gdl_samples, d: int) -> None:
    pot = two_basin_potential(d)
    assert abs(_share_z(gdl_samples[d], 0.0, basin_shares(pot)[0])) < 5


def test_gdl_flat_share_grows_with_dimension(gdl_samples) -> None:
    shares = [float((gdl_samples[d][:, 0] < 0).double().mean()) for d in range(1, 6)]
    assert shares[4] - shares[0] > 10 * math.sqrt(0.25 / CHAINS) and shares[0] > 0.5


@pytest.mark.parametrize("d", [1, 3, 5])
def test_gdl_histogram_matches_boltzmann_marginal(gdl_samples, d: int) -> None:
    edges = np.linspace(-4.5, 3.5, 33)
    assert _max_bin_z(gdl_samples[d][:, 0].numpy(), two_basin_potential(d), edges) < 5


@pytest.mark.parametrize("method", ["gdl", "sgd", "sgdl"])
def test_degenerate_valley_preferred_by_all_dynamics(method: str) -> None:
    """Theory IIb Figs. 4-6: GDL, SGD with synthetic (non-Gaussian, +-1) minibatch noise and SGDL at the same
    temperature all reach the Boltzmann law, which favours the degenerate valley over the point minimum."""
    pot = degenerate_valley_potential()
    t = pot.temperature
    kw = {
        "gdl": dict(temperature=t),
        "sgd": dict(noise_std=math.sqrt(2 * t / LR)),
        "sgdl": dict(noise_std=math.sqrt(t / LR), extra_noise=math.sqrt(t * LR)),
    }[method]
    assert effective_temperature(method, LR, **kw) == pytest.approx(t)
    x0 = torch.zeros(CHAINS, 2, dtype=torch.float64)
    x0[:, 0] = pot.centers[1, 0]  # start in the point minimum
    x = langevin_sample(pot.force, x0, LR, STEPS, method=method, seed=11, **kw).x
    exact = basin_shares(pot)[0]
    assert exact > 0.7
    assert abs(_share_z(x, 0.0, exact)) < 5
    assert _max_bin_z(x[:, 0].numpy(), pot, np.linspace(-6, 4, 21)) < 5


def test_sampler_seeding_and_bad_input() -> None:
    pot = two_basin_potential(2)
    x0 = torch.zeros(10, 2, dtype=torch.float64)
    a = langevin_sample(pot.force, x0, 0.01, 20, temperature=1.0, seed=5).x
    b = langevin_sample(pot.force, x0, 0.01, 20, temperature=1.0, seed=5).x
    c = langevin_sample(pot.force, x0, 0.01, 20, temperature=1.0, seed=6).x
    assert torch.equal(a, b) and not torch.equal(a, c)
    tr = langevin_sample(pot.force, x0, 0.01, 20, temperature=1.0, seed=5, trace_every=5, trace_chains=3)
    assert tr.trace.shape == (4, 3, 2)
    with pytest.raises(ConfigError):
        langevin_sample(pot.force, x0, 0.01, 5, method="hmc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        langevin_sample(pot.force, x0[0], 0.01, 5)
    with pytest.raises(ConfigError):
        two_basin_potential(0)
