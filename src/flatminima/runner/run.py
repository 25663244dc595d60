"""``run_sweep``: expand a sweep, skip finished runs, execute the rest, record each result as it arrives.

Resume contract: run ids hash the resolved config, and a run's results and its ``done`` status are committed
together, so invoking the same sweep again after a crash (even SIGKILL) skips the finished runs, redoes the
others (their partial rows are deleted first, and their run directory too, so a redone run cannot see a
half-written file of its aborted attempt) and ends with the same table as an uninterrupted sweep. A run
function with the attribute ``resumable = True`` keeps its run directory instead: it continues its own work
from there (the experiments' training runs resume from their last resume point, ``fm.train``). Runs that
failed are redone too. The run function is not part of the run id: change it, and use a new ``out_dir``.

Only one coordinator may write an experiment directory at a time (an exclusive ``flock`` on
``results.sqlite.lock``, released by the OS even on SIGKILL); a second concurrent sweep gets a ConfigError.

Bad input leaves nothing behind: when a sweep that created its folder, database and lock in this call fails
with an input error before recording any run (an unreachable ``cluster``, a run function that cannot be
sent to workers), it removes exactly what it created. An interrupted or crashed sweep keeps its database: it
is the state the next invocation resumes from.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from .._progress import progress_bar, progress_enabled
from ..errors import ConfigError, FlatminimaError
from . import executors
from .outcome import Outcome
from .store import DB_NAME, DONE, ResultsStore
from .sweep import Point, Sweep
from .worker import RunFn

log = logging.getLogger("flatminima.runner")
RUNS_DIR = "runs"


def run_dir(out_dir: str | Path, run_id: str) -> Path:
    """Where run ``run_id`` of an experiment directory keeps its files: ``out_dir/runs/<run_id>``."""
    return Path(out_dir) / RUNS_DIR / run_id


@contextmanager
def _writer_lock(out_dir: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(out_dir / f"{DB_NAME}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another sweep is writing to {out_dir}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself included) that does not exist yet, None if it exists."""
    missing = None
    for p in (path, *path.parents):
        if p.exists():
            break
        missing = p
    return missing


def _remove_created(out: Path, created: list[Path], top: Path | None) -> None:
    """Remove the files this sweep created (database with its WAL files, lock) and the folders it made."""
    for path in created:
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
    if top is None:
        return
    folder = out
    while True:  # empty folders up to and including the outermost one created
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == top:
            return
        folder = folder.parent


def _describe(point: Point) -> str:
    return " ".join(f"{k}={v}" for k, v in point.values.items())


def _status_line(console: Console | None, outcome: Outcome, point: Point) -> None:
    if console is None:
        return
    if outcome.status == DONE:
        seconds = outcome.seconds or 0.0
        console.print(f"[green]done[/]   {outcome.run_id} {escape(_describe(point))} ({seconds:.1f} s)")
    else:
        first = (outcome.error or "").splitlines()[0] if outcome.error else ""
        console.print(f"[red]failed[/] {outcome.run_id} {escape(_describe(point))}: {escape(first)}")


def _outcomes(
    tasks: list[executors.Task], fn: RunFn, workers: int, cluster: Any
) -> Generator[Outcome, None, None]:
    if cluster is not None and tasks:  # nothing to do: connect to no cluster, start no pool
        return executors.dask_cluster(tasks, fn, cluster)
    if workers == 1 or not tasks:
        return executors.serial(tasks, fn)
    return executors.process_pool(tasks, fn, workers)


def run_sweep(
    sweep: Sweep,
    fn: RunFn,
    out_dir: str | Path,
    workers: int = 1,
    cluster: Any = None,
    progress: bool | None = None,
) -> ResultsStore:
    """Run every point of ``sweep`` with ``fn(config, run_dir) -> dict`` and return the (open) results store.

    ``workers=1`` runs in this process; ``workers>1`` on a pool of single-threaded local processes;
    ``cluster`` (a Dask scheduler address, Client or cluster object) overrides ``workers``. ``progress``:
    None shows the bar and per-run lines on a terminal only, True/False force them.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    if not callable(fn):
        raise ConfigError(f"run function must be callable, got {fn!r}")
    out = Path(out_dir)
    top = _first_missing(out)
    out.mkdir(parents=True, exist_ok=True)
    created = [p for p in (out / DB_NAME, out / f"{DB_NAME}.lock") if not p.exists()]
    recorded: list[str] = []  # run ids recorded by this call
    try:
        return _run_locked(sweep, fn, out, workers, cluster, progress, recorded)
    except FlatminimaError:
        if not recorded and len(created) == 2:  # a fresh database holding no result: ours, and empty
            _remove_created(out, created, top)
        raise


def _run_locked(
    sweep: Sweep,
    fn: RunFn,
    out: Path,
    workers: int,
    cluster: Any,
    progress: bool | None,
    recorded: list[str],
) -> ResultsStore:
    points = sweep.expand()
    by_id = {p.run_id: p for p in points}
    show = progress_enabled() if progress is None else progress
    console = Console(stderr=True) if show else None
    with _writer_lock(out):
        store = ResultsStore(out, create=True)
        store.register(points)
        todo = store.reset_unfinished(by_id)
        if not getattr(fn, "resumable", False):
            for rid in todo:
                shutil.rmtree(run_dir(out, rid), ignore_errors=True)
        tasks = [(rid, by_id[rid].config, str(run_dir(out, rid))) for rid in todo]
        args = (tasks, fn, workers, cluster)
        skipped = len(points) - len(todo)
        title = f"{sweep.name}" + (f" ({skipped} of {len(points)} already done)" if skipped else "")
        n_failed = 0
        try:
            with progress_bar(len(tasks), title, enabled=show) as bar, closing(_outcomes(*args)) as outcomes:
                for outcome in outcomes:
                    store.record(outcome)
                    recorded.append(outcome.run_id)
                    n_failed += outcome.status != DONE
                    _status_line(console, outcome, by_id[outcome.run_id])
                    bar.advance()
        except BaseException:
            store.close()
            raise
    if n_failed:
        log.warning("%s: %d of %d runs failed; see the store's table()", sweep.name, n_failed, len(tasks))
    return store
