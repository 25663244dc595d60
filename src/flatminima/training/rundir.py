"""Run directories: who owns them, staged writing with resume, the SQLite metrics table.

Layout (docs/architecture.md)::

    RUN/.flatminima-run  config.yaml  metrics.sqlite  checkpoints/final.safetensors [step-N.safetensors]
        checkpoints/final.optim.pt  summary.json  [resume/ while a run can still be continued]

Ownership. ``train`` marks every run directory it writes with a ``.flatminima-run`` file. A directory is
*verifiably a flatminima run* when it holds that marker and every entry in it is one that flatminima writes
(``RUN_ENTRIES``); only such a directory (or an empty one) is ever replaced, and only with
``overwrite=True``. Anything else (a project folder, a run of an older version without the marker, a run with
a user's notes added) is refused, and nothing in it is touched.

Staging and resume. A run is written into ``.NAME.partial`` next to ``NAME`` (a fixed name, so a run killed by
SIGKILL can be found again), holding the marker, which is ``flock``-ed for the whole run: a second ``train``
into the same place is refused. At the end the partial directory is renamed onto ``NAME``. When a run stops
early (Ctrl-C / SIGTERM: status ``stopped``) the partial directory becomes ``NAME`` (complete, with its
``resume/`` state) unless ``NAME`` already holds a finished run, which is then kept untouched and the partial
directory stays where it is. Starting ``train`` again with the same output and the same configuration resumes
from the last resume checkpoint of either (see ``training/resume.py``); a different configuration is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from ..errors import CheckpointError, ConfigError

__all__ = [
    "MARKER",
    "RUN_ENTRIES",
    "MetricsDB",
    "RunLockedError",
    "RunStage",
    "check_target",
    "is_flatminima_run",
    "pending_resume",
    "read_metrics",
    "read_summary",
    "run_stage",
]

MARKER = ".flatminima-run"
#: Entries flatminima writes into a run directory (train, measure, report, plots); fnmatch patterns.
RUN_ENTRIES = (
    MARKER,
    "config.yaml",
    "metrics.sqlite",
    "metrics.sqlite-*",
    "checkpoints",
    "summary.json",
    "resume",
    "measure-*.json",
    "measure-*.png",
    "report.html",
    "summary.md",
    "*.png",
)
PARTIAL_SUFFIX = ".partial"


def _is_run_entry(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in RUN_ENTRIES)


def is_flatminima_run(path: Path) -> bool:
    """True when ``path`` holds flatminima's marker and nothing flatminima does not write."""
    if not path.is_dir() or not (path / MARKER).is_file():
        return False
    return all(_is_run_entry(entry.name) for entry in path.iterdir())


def _read_marker(path: Path) -> dict[str, Any]:
    try:
        data = json.loads((path / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check_target(out: Path, overwrite: bool = False) -> str:
    """What ``out`` is: ``"new"`` (absent or an empty directory), ``"run"`` (a flatminima run that may be
    replaced because ``overwrite``), ``"resumable"`` (a stopped flatminima run with a resume state).

    Raises :class:`ConfigError` for anything that must not be touched: a file, a directory with foreign
    content, a finished run without ``overwrite``.
    """
    if not out.exists() and not out.is_symlink():
        return "new"
    if out.is_symlink() or not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory; refusing to touch it")
    if not any(out.iterdir()):
        return "new"
    if not is_flatminima_run(out):
        if (out / MARKER).is_file():
            foreign = sorted(e.name for e in out.iterdir() if not _is_run_entry(e.name))
            raise ConfigError(
                f"output {out} is a flatminima run with other files added ({', '.join(foreign[:5])}); "
                "refusing to touch it: choose another output directory"
            )
        raise ConfigError(
            f"output {out} exists and is not a flatminima run directory; refusing to touch it: choose "
            "another output directory"
        )
    if (out / "resume").is_dir() and _read_marker(out).get("status") == "stopped":
        return "resumable"
    if not overwrite:
        raise ConfigError(
            f"output {out} holds a finished flatminima run; pass --overwrite (overwrite=True) to replace it"
        )
    return "run"


def _check_writable(directory: Path) -> None:
    """Fail before any work when ``directory`` (or its nearest existing parent) cannot be written."""
    probe = directory
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write to {probe}: permission denied (choose another output directory)")


@dataclass
class RunStage:
    """The directory a run is being written into, and what was found there."""

    path: Path  # the partial directory
    out: Path  # where the run goes at the end
    resumed: bool  # True when an earlier partial state exists in ``path`` and should be continued
    target: str  # check_target's verdict on ``out`` at the start


class RunLockedError(ConfigError):
    """Another ``train`` is writing the same run directory right now."""


class _DirLock:
    """An exclusive ``flock`` on a directory itself (it follows the directory through renames)."""

    def __init__(self, directory: Path) -> None:
        self._fd: int | None = os.open(directory, os.O_RDONLY)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.close()
            raise RunLockedError(
                f"another flatminima train is writing {directory}; wait for it to finish"
            ) from None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_marker(stage: Path, status: str, digest: str) -> None:
    atomic_write_json(stage / MARKER, {"flatminima": "run", "status": status, "config_sha256": digest})


def _same_config(stage: Path, digest: str) -> bool:
    return _read_marker(stage).get("config_sha256") == digest


@contextlib.contextmanager
def run_stage(out: Path, config_digest: str, overwrite: bool = False) -> Iterator[RunStage]:
    """Stage a run for ``out`` (see the module docstring); yield a :class:`RunStage`.

    The caller writes into ``stage.path`` and tells how it ended by returning normally (run complete: the
    stage replaces ``out``) or raising: ``KeyboardInterrupt`` (stopped: kept as described above), anything
    else (the stage is removed if this call created it, else kept for a later resume).
    """
    out = out.absolute()
    target = check_target(out, overwrite)
    _check_writable(out.parent)
    partial = out.parent / f".{out.name}{PARTIAL_SUFFIX}"
    if target == "resumable":
        if partial.exists():
            raise ConfigError(
                f"{out} is a stopped run and {partial} holds another partial run of it; remove one of them"
            )
        if not _same_config(out, config_digest):
            if not overwrite:
                raise ConfigError(
                    f"{out} is a stopped run of a different configuration; pass --overwrite to replace it"
                )
            target = "run"
        else:
            os.replace(out, partial)  # continue it where it stopped
    moved = target == "resumable"
    created = False
    if partial.exists():
        if not partial.is_dir() or not is_flatminima_run(partial):
            raise ConfigError(f"{partial} exists and is not a flatminima partial run; refusing to touch it")
        handle = _DirLock(partial)
        same = _same_config(partial, config_digest)
        if not same and not overwrite:
            handle.close()
            raise ConfigError(
                f"{partial} holds a partial run of a different configuration; pass --overwrite to discard it"
            )
        if not same or not (partial / "resume").is_dir():
            # Ours (marked, only our entries) and nothing to continue: start again from scratch.
            handle.close()
            shutil.rmtree(partial)
    if not partial.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            partial.mkdir()
        except FileExistsError:
            raise RunLockedError(f"another flatminima train is starting in {partial}") from None
        created = True
        handle = _DirLock(partial)
        _write_marker(partial, "partial", config_digest)
    resumed = (partial / "resume").is_dir() and not created
    stage = RunStage(partial, out, resumed, target)
    try:
        yield stage
    except KeyboardInterrupt:
        _write_marker(partial, "stopped", config_digest)
        if not out.exists() or (out.is_dir() and not any(out.iterdir())):
            _replace(partial, out)
        handle.close()
        raise
    except BaseException:
        handle.close()
        if created:
            shutil.rmtree(partial, ignore_errors=True)
        elif moved and not out.exists():
            os.replace(partial, out)  # the stopped run goes back where it was
        raise
    shutil.rmtree(partial / "resume", ignore_errors=True)
    _write_marker(partial, "finished", config_digest)
    check_target(out, overwrite=True)  # still ours (or absent) right before the swap
    _replace(partial, out)
    handle.close()


def _replace(stage: Path, out: Path) -> None:
    """Move ``stage`` onto ``out``; an existing ``out`` (a flatminima run or an empty dir) is removed."""
    if out.exists() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "run")
        os.replace(stage, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        os.replace(stage, out)
    except OSError as exc:  # pragma: no cover - e.g. a non-empty dir appeared meanwhile
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise ConfigError(
                f"{out} was filled by someone else meanwhile; the run is kept at {stage}"
            ) from None
        raise


def pending_resume(out: Path) -> tuple[Path, int] | None:
    """Where a run for ``out`` would resume from and at which step (None when it would start afresh)."""
    out = out.absolute()
    for place in (out.parent / f".{out.name}{PARTIAL_SUFFIX}", out):
        pointer = place / "resume" / "resume.json"
        if is_flatminima_run(place) and pointer.is_file():
            try:
                return place, int(json.loads(pointer.read_text())["step"])
            except (OSError, ValueError, KeyError, TypeError):
                return None
    return None


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

    def last_rowid(self) -> int:
        """The rowid of the last row written (0 for an empty table)."""
        row = self._conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM metrics").fetchone()
        return int(row[0])

    def truncate(self, rowid: int) -> list[tuple[int, int, str, float]]:
        """Delete the rows written after ``rowid`` (a resume point); return the rows kept, in order."""
        self._conn.execute("DELETE FROM metrics WHERE rowid > ?", (rowid,))
        self._conn.commit()
        rows = self._conn.execute("SELECT step, phase, name, value FROM metrics ORDER BY rowid").fetchall()
        return [(int(s), int(p), str(n), math.nan if v is None else float(v)) for s, p, n, v in rows]

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
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is corrupt ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is corrupt (expected a JSON object)")
    return data
