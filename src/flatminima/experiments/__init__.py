"""Reproduced paper results: one module per result, ``experiments/<paper>_<topic>.py``, imported here.

Every module of this package whose name matches ``<paper>_<topic>`` (lowercase, with an underscore) is
imported when the package is imported, so its ``@register`` decorators fill :data:`REGISTRY`; adding an
experiment means adding a file. A module that fails to import is a bug and raises.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from .base import (
    REGISTRY,
    RESULT_FILE,
    SCALES,
    ComparisonRow,
    Experiment,
    ExperimentResult,
    Findings,
    RunContext,
    available,
    get,
    register,
    unregister,
    verdict,
)

EXPERIMENT_MODULE = re.compile(r"^[a-z][a-z0-9]*_[a-z0-9_]+$")


def _import_experiment_modules() -> list[str]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if EXPERIMENT_MODULE.match(m.name))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


MODULES = _import_experiment_modules()

__all__ = [
    "MODULES",
    "REGISTRY",
    "RESULT_FILE",
    "SCALES",
    "ComparisonRow",
    "Experiment",
    "ExperimentResult",
    "Findings",
    "RunContext",
    "available",
    "get",
    "register",
    "unregister",
    "verdict",
]
