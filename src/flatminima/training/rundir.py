"""Run directories: staged writing, the SQLite metrics table and atomic JSON/YAML files.

Layout (docs/architecture.md)::

    RUN/config.yaml  metrics.sqlite  checkpoints/final.safetensors [step-N.safetensors]  summary.json

A run is written into a hidden temporary directory next to ``RUN`` and renamed onto it at the end, so a crash
or bad input never leaves a half-written run; ``summary.json`` is the last file written. An existing run
directory (one holding ``config.yaml`` or ``summary.json``) or an empty directory is replaced; any other
existing path is refused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, ConfigError

__all__ = [
    "MetricsDB",
    "check_target",
    "read_metrics",
    "read_summary",
    "staged_dir",
]

RUN_FILES = ("config.yaml", "summary.json")


def check_target(out: Path) -> None:
    """Refuse to overwrite an existing path that is neither empty nor a run directory."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if any(out.iterdir()) and not any((out / f).exists() for f in RUN_FILES):
        raise ConfigError(f"output {out} exists and is not a run directory; refusing to overwrite it")


@contextmanager
def staged_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary directory next to ``out``; it replaces ``out`` on success, is deleted on failure."""
    out = out.absolute()
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield stage
        check_target(out)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / "run")
            os.replace(stage, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


class MetricsDB:
    """The ``metrics(step INTEGER, phase INTEGER, name TEXT, value REAL)`` table (long format)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path))
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS metrics (step INTEGER, phase INTEGER, name TEXT, value REAL)"
        )
        self._conn.commit()

    def add(self, step: int, phase: int, values: Mapping[str, float]) -> None:
        rows = [(step, phase, name, float(v)) for name, v in values.items()]
        self._conn.executemany("INSERT INTO metrics VALUES (?, ?, ?, ?)", rows)
        self._conn.commit()

    def close(self) -> None:
        self._conn.close()


def read_metrics(run: str | Path) -> list[tuple[int, int, str, float]]:
    """All rows ``(step, phase, name, value)`` of a run's metrics table, in order of writing."""
    path = Path(run) / "metrics.sqlite"
    if not path.is_file():
        raise CheckpointError(f"run {run} has no metrics.sqlite")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT step, phase, name, value FROM metrics ORDER BY rowid").fetchall()
    except sqlite3.DatabaseError as exc:
        raise CheckpointError(f"{path} is not a readable metrics database ({exc})") from None
    finally:
        conn.close()
    return [(int(s), int(p), str(n), math.nan if v is None else float(v)) for s, p, n, v in rows]


def read_summary(run: str | Path) -> dict[str, Any]:
    """A run's ``summary.json``; :class:`CheckpointError` when missing or unreadable."""
    path = Path(run) / "summary.json"
    if not path.is_file():
        raise CheckpointError(f"run {run} has no summary.json (not a finished run directory)")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc})") from None
