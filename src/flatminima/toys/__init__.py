"""Analytic toy systems: flat vs sharp potentials with exact Boltzmann laws and a vectorized Langevin sampler
(Theory IIb Figs. 3-6), Wu, Ma & E's 1-D escape example, the non-equilibrium double well of the thesis's
Example 6.43, and min-norm least squares (Theory III Sec. 9.6). Figures: :mod:`flatminima.toys.plots`."""

from __future__ import annotations

from . import escape, minnorm, nonequilibrium
from .boltzmann import basin_shares, bin_probabilities, grid_shares, marginal_density, well_cdf
from .escape import EscapeRun, MinimumStability, escape_objective, escape_stability, run_escape
from .minnorm import MinNormProblem, implicit_ridge_lambda, make_problem, min_norm_solution, ridge
from .potentials import MixturePotential, degenerate_valley_potential, two_basin_potential
from .sampler import SampleResult, effective_temperature, langevin_sample

__all__ = [
    "EscapeRun",
    "MinNormProblem",
    "MinimumStability",
    "MixturePotential",
    "SampleResult",
    "basin_shares",
    "bin_probabilities",
    "degenerate_valley_potential",
    "effective_temperature",
    "escape",
    "escape_objective",
    "escape_stability",
    "grid_shares",
    "implicit_ridge_lambda",
    "langevin_sample",
    "make_problem",
    "marginal_density",
    "min_norm_solution",
    "minnorm",
    "nonequilibrium",
    "ridge",
    "run_escape",
    "two_basin_potential",
    "well_cdf",
]
