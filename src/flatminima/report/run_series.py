"""A training run's metrics as series over steps, read from a run directory, a ``LoadedRun`` or a
``TrainResult``; and the run directories under a folder."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import CheckpointError, ConfigError
from ..training.rundir import read_metrics, read_summary

__all__ = ["RunMetrics", "find_runs", "is_run_dir", "run_metrics"]


@dataclass
class RunMetrics:
    """Everything a plot or a report needs from one run.

    ``series``: metric name -> ``(steps, values)`` in step order (a metric logged twice at one step, e.g. at a
    phase boundary, keeps its last value); ``phases``: per phase, its index, first step and a short
    description (``"sgd lr 0.5 B 8"``); ``summary``: status, steps, seconds, final metrics; ``config``: the
    resolved configuration (dict) when known; ``path``: the run directory, if any.
    """

    name: str
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    phases: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None
    path: Path | None = None

    @property
    def names(self) -> list[str]:
        return list(self.series)


def is_run_dir(path: Path) -> bool:
    """A finished training run directory: ``summary.json`` next to ``config.yaml`` or ``metrics.sqlite``."""
    return (path / "summary.json").is_file() and (
        (path / "config.yaml").is_file() or (path / "metrics.sqlite").is_file()
    )


def find_runs(root: str | Path) -> list[Path]:
    """``root`` if it is a run directory, else every run directory below it (hidden staging folders of runs
    being written are skipped), sorted by path."""
    root = Path(root)
    if is_run_dir(root):
        return [root]
    found = []
    for summary in root.rglob("summary.json"):
        path = summary.parent
        hidden = any(part.startswith(".") for part in path.relative_to(root).parts)
        if not hidden and is_run_dir(path):
            found.append(path)
    return sorted(found, key=lambda p: (len(p.relative_to(root).parts), str(p)))


Series = dict[str, tuple[np.ndarray, np.ndarray]]


def _series_from_rows(rows: Iterable[tuple[int, int, str, float]]) -> Series:
    by_name: dict[str, dict[int, float]] = {}
    for step, _phase, name, value in rows:
        by_name.setdefault(name, {})[int(step)] = float(value)
    out = {}
    for name, points in by_name.items():
        steps = np.array(sorted(points), dtype=np.int64)
        out[name] = (steps, np.array([points[s] for s in steps], dtype=np.float64))
    return out


def _phase_starts(rows: Iterable[tuple[int, int]]) -> dict[int, int]:
    """phase index -> first step logged in it."""
    starts: dict[int, int] = {}
    for step, phase in rows:
        starts[phase] = min(starts.get(phase, step), step)
    return dict(sorted(starts.items()))


def _describe_phase(phase: dict[str, Any]) -> str:
    parts = [str(phase.get("name") or phase.get("optimizer") or "")]
    if phase.get("lr") is not None:
        parts.append(f"lr {phase['lr']:g}")
    if phase.get("batch_size"):
        parts.append(f"B {phase['batch_size']}")
    return " ".join(p for p in parts if p)


def _phases(starts: dict[int, int], config: dict[str, Any] | None, summary: dict[str, Any]) -> list[dict]:
    """Per phase: index, first step (from the steps each phase took, as the summary records them; else the
    first step logged in it) and a short label from the configuration."""
    configured = (config or {}).get("phases") or []
    ran = summary.get("phases") or []
    begin = [0]
    for r in ran:
        begin.append(begin[-1] + int(r.get("steps") or 0))
    out = []
    for index, logged in starts.items():
        info = dict(configured[index]) if index < len(configured) else {}
        if index < len(ran) and ran[index].get("name"):
            info["name"] = ran[index]["name"]
        start = begin[index] if index < len(ran) else logged
        out.append({"phase": index, "start": start, "label": _describe_phase(info) or f"phase {index + 1}"})
    return out


def _read_config(path: Path) -> dict[str, Any] | None:
    file = path / "config.yaml"
    if not file.is_file():
        return None
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{file} is not readable YAML ({exc})") from None
    return data if isinstance(data, dict) else None


def run_metrics(run: Any, name: str | None = None) -> RunMetrics:
    """The metrics of ``run``: a run directory (``str`` / ``Path``), a :class:`~flatminima.LoadedRun`, a
    :class:`~flatminima.TrainResult` (its ``history``; no run directory needed) or a :class:`RunMetrics`.
    ``name`` labels the run in plots (default: the directory's name, or ``"run"``)."""
    if isinstance(run, RunMetrics):
        return run if name is None else replace(run, name=name)
    if isinstance(run, (str, Path)):
        path = Path(run)
        if not path.is_dir():
            raise CheckpointError(f"run directory {path} not found")
        rows = read_metrics(path)
        summary = read_summary(path)
        config = _read_config(path)
        starts = _phase_starts((s, p) for s, p, _, _ in rows)
        phases = _phases(starts, config, summary)
        return RunMetrics(name or path.name, _series_from_rows(rows), phases, summary, config, path)
    if hasattr(run, "path") and hasattr(run, "summary") and hasattr(run, "config"):  # LoadedRun
        return run_metrics(run.path, name)
    if hasattr(run, "history") and hasattr(run, "final"):  # TrainResult
        rows = [
            (int(r["step"]), int(r.get("phase", 0)), k, float(v))
            for r in run.history
            for k, v in r.items()
            if k not in ("step", "phase")
        ]
        summary = {
            "status": run.status,
            "steps": run.steps,
            "seconds": run.seconds,
            "final": dict(run.final),
            "phases": list(run.phases),
        }
        starts = _phase_starts((int(r["step"]), int(r.get("phase", 0))) for r in run.history)
        out_dir = Path(run.out_dir) if run.out_dir is not None else None
        default = out_dir.name if out_dir is not None else "run"
        return RunMetrics(
            name or default, _series_from_rows(rows), _phases(starts, None, summary), summary, None, out_dir
        )
    raise ConfigError(
        f"cannot read metrics from {type(run).__name__}: pass a run directory, a LoadedRun or a TrainResult"
    )
