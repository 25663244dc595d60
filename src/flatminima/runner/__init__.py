"""Sweeps over configs, executed locally or on a Dask cluster, with a crash-safe SQLite results store.

``Sweep(base, grid, name)`` -> ``expand()`` -> ``run_sweep(sweep, fn, out_dir, workers=, cluster=)`` ->
``ResultsStore`` (``runs()``, ``results(id)``, ``table()``, ``metrics(id)``).
"""

from .outcome import Outcome
from .run import run_dir, run_sweep
from .store import ResultsStore, RunRecord
from .sweep import Point, Sweep, expand, get_dotted, run_id, set_dotted

__all__ = [
    "Outcome",
    "Point",
    "ResultsStore",
    "RunRecord",
    "Sweep",
    "expand",
    "get_dotted",
    "run_dir",
    "run_id",
    "run_sweep",
    "set_dotted",
]
