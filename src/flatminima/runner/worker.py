"""Worker side of a sweep: run one point, never touch the database, keep each worker single-threaded."""

from __future__ import annotations

import copy
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .outcome import Outcome, encode_results, format_error, utc_now

RunFn = Callable[[dict[str, Any], Path], Any]
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def execute_run(fn: RunFn, config: dict[str, Any], run_dir: str, run_id: str) -> Outcome:
    """Call ``fn(config, run_dir)`` and turn its return value, or its exception, into an Outcome.

    The function gets a deep copy of the config (it may mutate it freely). Any ``Exception`` is recorded as a
    failed run with its traceback; the sweep goes on.
    """
    started, t0 = utc_now(), time.perf_counter()
    try:
        path = Path(run_dir)
        path.mkdir(parents=True, exist_ok=True)
        results, metrics = encode_results(fn(copy.deepcopy(config), path))
        status, error = "done", None
    except Exception as exc:
        results, metrics, status, error = {}, [], "failed", format_error(exc)
    return Outcome(run_id, status, results, metrics, error, started, utc_now(), time.perf_counter() - t0)


def limit_threads() -> None:
    """One thread per worker: the BLAS/OpenMP environment variables and torch's intra-op pool. Workers draw
    no progress bars of their own (they would garble the coordinator's)."""
    for var in THREAD_ENV_VARS:
        os.environ[var] = "1"
    os.environ["FLATMINIMA_PROGRESS"] = "0"
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(1)


def execute_run_single_threaded(fn: RunFn, config: dict[str, Any], run_dir: str, run_id: str) -> Outcome:
    """:func:`execute_run` after :func:`limit_threads` (for Dask workers, which have no initializer here)."""
    limit_threads()
    return execute_run(fn, config, run_dir, run_id)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, counts as dead; /proc on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _exit_when_coordinator_dies(coordinator: int, period: float) -> None:
    while _alive(coordinator):
        time.sleep(period)
    os._exit(1)


def init_pool_worker(coordinator: int) -> None:
    """Process-pool initializer: single-threaded, SIGINT ignored, exit when the coordinator dies (SIGKILL).

    Without the watchdog, workers of a killed coordinator would finish their current run and then wait
    forever; with forkserver they would also keep the fork server alive (each child holds its liveness pipe),
    so watching the parent pid is not enough: the coordinator's pid is watched instead.
    """
    limit_threads()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the coordinator
    # alone handles it (and terminates the workers), instead of every worker printing a traceback
    threading.Thread(target=_exit_when_coordinator_dies, args=(coordinator, 0.5), daemon=True).start()
