"""What one run produces, and how a run function's return value is checked and encoded (worker side).

A run function returns a dict of JSON-able results (scalars, lists, small dicts); the optional key
``"metrics"`` holds ``[{"step": int, "name": str, "value": float}, ...]`` rows for the metrics table. Values
are encoded to JSON in the worker, so a bad return value fails that run (with a clear error) rather than the
coordinator. NumPy / torch scalars and arrays, paths and dataclasses (e.g. :class:`flatminima.Estimate`) are
converted; NaN and inf are kept (a diverged run reports them).
"""

from __future__ import annotations

import dataclasses
import json
import operator
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

METRICS_KEY = "metrics"


@dataclass
class Outcome:
    """The record of one executed run, sent from a worker to the coordinator, which alone writes it."""

    run_id: str
    status: str  # "done" | "failed"
    results: dict[str, str] = field(default_factory=dict)  # key -> JSON text
    metrics: list[tuple[int, str, float]] = field(default_factory=list)
    error: str | None = None
    started: str | None = None
    finished: str | None = None
    seconds: float | None = None


def utc_now() -> str:
    """ISO-8601 UTC timestamp with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def to_jsonable(value: Any) -> Any:
    """``json.dumps`` default hook: NumPy/torch values, paths, dataclasses and objects with ``to_dict``."""
    if isinstance(value, PurePath):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return value.detach().cpu().tolist() if hasattr(value, "detach") else value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"value of type {type(value).__name__} is not JSON-serialisable")


def encode_value(value: Any) -> str:
    """JSON text of a result value (NaN / inf allowed: Python's json writes and reads them)."""
    return json.dumps(value, default=to_jsonable, allow_nan=True)


def _metric_row(row: Any, index: int) -> tuple[int, str, float]:
    if not isinstance(row, dict) or not {"step", "name", "value"} <= set(row):
        raise ValueError(f"metrics[{index}] must be a dict with keys step, name, value; got {row!r}")
    step, name, value = row["step"], row["name"], row["value"]
    try:
        step = operator.index(step)
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"metrics[{index}]: need an integer step and a real value, got {row!r}") from None
    if not isinstance(name, str):
        raise ValueError(f"metrics[{index}]: name must be a string, got {name!r}")
    return step, name, value


def encode_results(results: Any) -> tuple[dict[str, str], list[tuple[int, str, float]]]:
    """Split a run function's return value into encoded results and metric rows (TypeError/ValueError)."""
    if results is None:
        return {}, []
    if not isinstance(results, dict):
        raise TypeError(f"run function must return a dict of results, got {type(results).__name__}")
    encoded: dict[str, str] = {}
    metrics: list[tuple[int, str, float]] = []
    for key, value in results.items():
        if not isinstance(key, str):
            raise TypeError(f"result keys must be strings, got {key!r}")
        if key == METRICS_KEY:
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"results['metrics'] must be a list of rows, got {type(value).__name__}")
            metrics = [_metric_row(row, i) for i, row in enumerate(value)]
        else:
            encoded[key] = encode_value(value)
    return encoded, metrics


def format_error(exc: BaseException) -> str:
    """``Type: message`` on the first line, then the traceback (stored in the runs table)."""
    head = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return f"{head}\n\n{tb}"


def failed(run_id: str, exc: BaseException) -> Outcome:
    """The outcome of a run whose execution itself broke (e.g. its worker process died)."""
    return Outcome(run_id, "failed", error=format_error(exc), finished=utc_now())
