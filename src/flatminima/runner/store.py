"""The results store: one SQLite database per experiment directory (``results.sqlite``).

Tables::

    runs(run_id TEXT PRIMARY KEY, config TEXT JSON, point TEXT JSON, status TEXT, started TEXT, finished TEXT,
         seconds REAL, error TEXT)
    results(run_id TEXT, key TEXT, value TEXT JSON, PRIMARY KEY (run_id, key))
    metrics(run_id TEXT, step INTEGER, name TEXT, value REAL)

``point`` (the grid values that define the run, dotted keys) is an addition to the issue's schema, so that
:meth:`ResultsStore.table` can show what varies. ``status`` is ``"pending"`` (registered, not finished),
``"done"`` or ``"failed"``; a diverged run is ``"done"`` with its own ``status`` result. Timestamps are
ISO-8601 UTC text. NaN metric values are stored as NULL (SQLite has no NaN) and read back as NaN.

Crash safety: the database runs in WAL mode with ``synchronous=FULL``; a run's results, metrics and its
``"done"`` status are written in ONE transaction (:meth:`ResultsStore.record`), so after a SIGKILL a run is
either completely recorded or still pending. Only the coordinating process writes; workers return
:class:`~flatminima.runner.outcome.Outcome` objects. Readers (another process polling the file) are safe at
any time.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataNotFoundError, UnknownNameError
from .outcome import Outcome
from .sweep import Point, canonical_json

DB_NAME = "results.sqlite"
PENDING, DONE, FAILED = "pending", "done", "failed"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, config TEXT NOT NULL, point TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL,
    started TEXT, finished TEXT, seconds REAL, error TEXT);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, key));
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL, step INTEGER NOT NULL, name TEXT NOT NULL, value REAL);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics (run_id, name, step);
"""


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs table, decoded."""

    run_id: str
    config: dict[str, Any]
    point: dict[str, Any]
    status: str
    started: str | None
    finished: str | None
    seconds: float | None
    error: str | None


def store_path(path: str | Path) -> Path:
    """``path`` itself when it names a file, else ``path / results.sqlite``."""
    path = Path(path)
    return path / DB_NAME if path.is_dir() or path.suffix != ".sqlite" else path


class ResultsStore:
    """Read (and, for the coordinator, write) a sweep's results database.

    ``ResultsStore(path)`` takes the experiment directory or the ``.sqlite`` file; a missing database raises
    :class:`DataNotFoundError` unless ``create=True`` (used by :func:`run_sweep`).
    """

    def __init__(self, path: str | Path, create: bool = False) -> None:
        self.path = store_path(path)
        if not self.path.exists():
            if not create:
                raise DataNotFoundError(f"no results database at {self.path}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=60.0)
        if create:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        self._conn.execute("PRAGMA synchronous=FULL")

    # -- lifecycle ------------------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({str(self.path)!r})"

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- writing (coordinator only) -------------------------------------------------------------------------
    def register(self, points: Sequence[Point]) -> None:
        """Add the points that are not yet in the store as ``pending`` runs (one transaction)."""
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, config, point, status) VALUES (?, ?, ?, ?)",
                [(p.run_id, canonical_json(p.config), canonical_json(p.values), PENDING) for p in points],
            )

    def reset_unfinished(self, run_ids: Iterable[str]) -> list[str]:
        """Mark the given runs that are not ``done`` as pending and delete their partial rows; return them."""
        ids = list(run_ids)
        status = self._statuses()
        todo = [rid for rid in ids if status.get(rid) != DONE]
        with self._transaction() as db:
            for rid in todo:
                db.execute("DELETE FROM results WHERE run_id = ?", (rid,))
                db.execute("DELETE FROM metrics WHERE run_id = ?", (rid,))
                db.execute(
                    "UPDATE runs SET status = ?, started = NULL, finished = NULL, seconds = NULL, "
                    "error = NULL WHERE run_id = ?",
                    (PENDING, rid),
                )
        return todo

    def record(self, outcome: Outcome) -> None:
        """Write a run's results, metrics and final status in one transaction (replacing any partial rows)."""
        metrics = [(outcome.run_id, s, n, None if math.isnan(v) else v) for s, n, v in outcome.metrics]
        with self._transaction() as db:
            db.execute("DELETE FROM results WHERE run_id = ?", (outcome.run_id,))
            db.execute("DELETE FROM metrics WHERE run_id = ?", (outcome.run_id,))
            db.executemany(
                "INSERT INTO results (run_id, key, value) VALUES (?, ?, ?)",
                [(outcome.run_id, k, v) for k, v in outcome.results.items()],
            )
            db.executemany("INSERT INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)", metrics)
            o = outcome
            db.execute(
                "UPDATE runs SET status = ?, started = ?, finished = ?, seconds = ?, error = ? "
                "WHERE run_id = ?",
                (o.status, o.started, o.finished, o.seconds, o.error, o.run_id),
            )

    # -- reading --------------------------------------------------------------------------------------------
    def _statuses(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT run_id, status FROM runs").fetchall())

    def runs(self, run_ids: Iterable[str] | None = None) -> list[RunRecord]:
        """Run records in registration order (sweep expansion order), or in the order of ``run_ids``."""
        rows = self._conn.execute(
            "SELECT run_id, config, point, status, started, finished, seconds, error FROM runs ORDER BY rowid"
        ).fetchall()
        records = {r[0]: RunRecord(r[0], json.loads(r[1]), json.loads(r[2]), *r[3:]) for r in rows}
        if run_ids is None:
            return list(records.values())
        wanted = list(run_ids)
        missing = [rid for rid in wanted if rid not in records]
        if missing:
            raise UnknownNameError(f"unknown run {missing[0]!r} in {self.path}")
        return [records[rid] for rid in wanted]

    def _check(self, run_id: str) -> None:
        if self._conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise UnknownNameError(f"unknown run {run_id!r} in {self.path}")

    def results(self, run_id: str) -> dict[str, Any]:
        """The decoded results of one run (empty for pending or failed runs)."""
        self._check(run_id)
        rows = self._conn.execute("SELECT key, value FROM results WHERE run_id = ? ORDER BY rowid", (run_id,))
        return {k: json.loads(v) for k, v in rows.fetchall()}

    def metrics(self, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """Metric rows ``{"step", "name", "value"}`` of one run in logged order, optionally one name only."""
        self._check(run_id)
        query, args = "SELECT step, name, value FROM metrics WHERE run_id = ?", [run_id]
        if name is not None:
            query, args = query + " AND name = ?", [*args, name]
        rows = self._conn.execute(query + " ORDER BY rowid", args).fetchall()
        return [{"step": s, "name": n, "value": math.nan if v is None else v} for s, n, v in rows]

    def table(self, run_ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """One row per run: ``run_id``, ``run_status``, ``error``, the grid point (dotted keys), the results.

        A result key that collides with one of the former is prefixed ``"result."``. Timing columns are left
        out (see :meth:`runs`), so tables of two executions of the same sweep compare equal.
        """
        results: dict[str, dict[str, Any]] = {}
        for rid, key, value in self._conn.execute("SELECT run_id, key, value FROM results ORDER BY rowid"):
            results.setdefault(rid, {})[key] = json.loads(value)
        rows = []
        for rec in self.runs(run_ids):
            row: dict[str, Any] = {"run_id": rec.run_id, "run_status": rec.status, "error": rec.error}
            row.update(rec.point)
            for key, value in results.get(rec.run_id, {}).items():
                row[f"result.{key}" if key in row else key] = value
            rows.append(row)
        return rows

    def counts(self) -> dict[str, int]:
        """Number of runs per status."""
        return dict(self._conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
