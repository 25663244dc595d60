"""Reproduced paper results: one module per result, ``experiments/<paper>_<topic>.py``, imported here.

Every module of this package whose name matches ``<paper>_<topic>`` (lowercase, with an underscore) is
imported on the first call of :func:`available` or :func:`get` (not at package import, which would make
``flatminima.report`` and the experiment modules import each other), so its ``@register`` decorators fill
:data:`REGISTRY`; adding an experiment means adding a file. A module that fails to import is a bug and raises.
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
    """Import the experiment modules (cached by ``sys.modules`` after the first call); return their names."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if EXPERIMENT_MODULE.match(m.name))
    for name in names:
        importlib.import_module(f"{__name__}.{name}")
    return names


__all__ = [
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
