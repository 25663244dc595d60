"""Curvature engine: eigensolvers on implicit operators, sharpness, traces, spectral densities,
non-uniformity and the linear stability of minima for SGD (Wu, Ma & E 2018)."""

from .density import Density, plot_density, slq, spectral_density
from .lanczos import LanczosResult, lanczos
from .nonuniformity import AUTO_GGN_LOSS_RATIO, non_uniformity
from .operators import (
    CallableOperator,
    GGNOperator,
    HessianOperator,
    LinearOperator,
    ScaledOperator,
    SumOperator,
    identity,
)
from .power import PowerResult, power_iteration
from .preconditioned import (
    Preconditioner,
    preconditioned_sharpness,
    preconditioner_from_state,
    stability_threshold,
)
from .probe import SharpnessProbe
from .sharpness import EigenvalueResult, hessian_eigenvalues, sharpness
from .sigma import SigmaOperator
from .spectrum import SpectrumSummary, local_entropy_width, spectrum_summary
from .stability import Stability, StabilityOperator, linear_stability
from .trace import hessian_trace, hutchinson, hutchpp

__all__ = [
    "AUTO_GGN_LOSS_RATIO",
    "CallableOperator",
    "Density",
    "EigenvalueResult",
    "GGNOperator",
    "HessianOperator",
    "LanczosResult",
    "LinearOperator",
    "PowerResult",
    "Preconditioner",
    "ScaledOperator",
    "SharpnessProbe",
    "SigmaOperator",
    "SpectrumSummary",
    "Stability",
    "StabilityOperator",
    "SumOperator",
    "hessian_eigenvalues",
    "hessian_trace",
    "hutchinson",
    "hutchpp",
    "identity",
    "lanczos",
    "linear_stability",
    "local_entropy_width",
    "non_uniformity",
    "plot_density",
    "power_iteration",
    "preconditioned_sharpness",
    "preconditioner_from_state",
    "sharpness",
    "slq",
    "spectral_density",
    "spectrum_summary",
    "stability_threshold",
]
