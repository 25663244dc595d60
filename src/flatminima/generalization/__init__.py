"""Margins, norms and input-perturbation robustness of trained classifiers (Theory III)."""

from .margins import MarginStats, functional_margins, margins
from .norms import fan_in_l1_norms, l2_norm, path_norm
from .robustness import PerturbationCurve, perturbation_error

__all__ = [
    "MarginStats",
    "PerturbationCurve",
    "fan_in_l1_norms",
    "functional_margins",
    "l2_norm",
    "margins",
    "path_norm",
    "perturbation_error",
]
