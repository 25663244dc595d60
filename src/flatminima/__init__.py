"""flatminima: measure, explain and reproduce which minima SGD finds.

The public API (see README): data and models (``fm.data.load``, ``fm.models.build``), the ``Objective``, the
curvature engine (``sharpness``, ``non_uniformity``, ``linear_stability``, ...), training (``fm.train``), the
optimizers (``fm.optim``), toys (``fm.toys``), landscape / noise / generalization probes, the sweep runner and
the experiments (``fm.experiments``, imported on first use since it loads every experiment module).
"""

from __future__ import annotations

import importlib
from typing import Any

from . import curvature, data, generalization, landscape, models, noise, optim, report, runner, toys, training
from .config import Phase, TrainConfig, load_config, train_from_config
from .curvature import (
    Density,
    EigenvalueResult,
    GGNOperator,
    HessianOperator,
    SharpnessProbe,
    SigmaOperator,
    SpectrumSummary,
    Stability,
    hessian_eigenvalues,
    hessian_trace,
    lanczos,
    linear_stability,
    local_entropy_width,
    non_uniformity,
    plot_density,
    power_iteration,
    preconditioned_sharpness,
    sharpness,
    spectral_density,
    spectrum_summary,
)
from .errors import (
    CheckpointError,
    ConfigError,
    ConvergenceWarning,
    DataNotFoundError,
    FlatminimaError,
    UnknownNameError,
    UnsupportedOperationError,
)
from .estimate import Estimate
from .landscape import adaptive_sharpness, epsilon_sharpness, flatness_radius
from .noise import noise_scale
from .objective import Objective
from .training import LoadedRun, Probe, ProbeContext, TrainResult, load_run, train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceWarning",
    "DataNotFoundError",
    "Density",
    "EigenvalueResult",
    "Estimate",
    "FlatminimaError",
    "GGNOperator",
    "HessianOperator",
    "LoadedRun",
    "Objective",
    "Phase",
    "Probe",
    "ProbeContext",
    "SharpnessProbe",
    "SigmaOperator",
    "SpectrumSummary",
    "Stability",
    "TrainConfig",
    "TrainResult",
    "UnknownNameError",
    "UnsupportedOperationError",
    "adaptive_sharpness",
    "curvature",
    "data",
    "epsilon_sharpness",
    "experiments",
    "flatness_radius",
    "generalization",
    "hessian_eigenvalues",
    "hessian_trace",
    "lanczos",
    "landscape",
    "linear_stability",
    "load_config",
    "load_run",
    "local_entropy_width",
    "models",
    "noise",
    "noise_scale",
    "non_uniformity",
    "optim",
    "plot_density",
    "plot_run",
    "power_iteration",
    "preconditioned_sharpness",
    "report",
    "runner",
    "sharpness",
    "spectral_density",
    "spectrum_summary",
    "toys",
    "train",
    "train_from_config",
    "training",
]


def __getattr__(name: str) -> Any:
    if name == "experiments":
        return importlib.import_module(".experiments", __name__)
    if name == "plot_run":  # matplotlib is loaded on first use, not by ``import flatminima``
        return importlib.import_module(".report.run_plots", __name__).plot_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
