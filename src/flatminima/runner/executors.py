"""Executors: in-process serial, a local process pool, or a Dask distributed cluster.

Each executor takes the list of tasks ``(run_id, config, run_dir)`` and yields one
:class:`~flatminima.runner.outcome.Outcome` per task as runs finish (completion order). Nothing here writes
the database.

Local pool: ``concurrent.futures.ProcessPoolExecutor`` with the ``forkserver`` start method on Linux (workers
forked from a clean server process that has pre-imported torch, so starting one is cheap and nothing of the
coordinator's state, threads or locks is inherited) and ``spawn`` elsewhere. Scripts that use it need the
usual ``if __name__ == "__main__":`` guard. A worker that dies (segfault, out of memory) breaks the pool: the
affected runs are recorded as failed and the next invocation redoes them. Workers ignore SIGINT; when the
coordinator is interrupted (Ctrl-C, or SIGTERM which the CLI turns into the same interrupt) it terminates
them, so it stops at once instead of waiting for their runs, which stay pending and are redone on resume.

Dask: ``cluster`` is a scheduler address (``"tcp://host:8786"``), a ``distributed.Client`` or a cluster object
(e.g. ``LocalCluster``). Run directories are paths on the coordinator, so remote workers need a shared
filesystem. Each task limits its worker process to one thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import uuid
from collections.abc import Generator, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from ..errors import ConfigError
from .outcome import Outcome, failed
from .worker import RunFn, execute_run, execute_run_single_threaded, init_pool_worker

Task = tuple[str, dict[str, Any], str]  # run_id, config, run_dir


def serial(tasks: Sequence[Task], fn: RunFn) -> Generator[Outcome, None, None]:
    """Run every task in this process, in order (threads left as the caller set them)."""
    for rid, config, run_dir in tasks:
        yield execute_run(fn, config, run_dir, rid)


def _pool_context() -> multiprocessing.context.BaseContext:
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["torch"])
        return ctx
    return multiprocessing.get_context("spawn")


def check_picklable(fn: RunFn) -> None:
    """The run function must travel to worker processes by reference (a module-level importable function)."""
    try:
        pickle.dumps(fn)
    except Exception as exc:
        raise ConfigError(
            f"run function {fn!r} cannot be sent to worker processes ({exc}); "
            "use a module-level function of an importable module"
        ) from None


def process_pool(tasks: Sequence[Task], fn: RunFn, workers: int) -> Generator[Outcome, None, None]:
    """Run the tasks on ``workers`` single-threaded local processes."""
    check_picklable(fn)
    n = max(1, min(workers, len(tasks)))
    pool = ProcessPoolExecutor(
        n, mp_context=_pool_context(), initializer=init_pool_worker, initargs=(os.getpid(),)
    )
    try:
        with _interrupts_deferred():  # workers start in submit: an interrupt there would orphan one mid-start
            futures = {
                pool.submit(execute_run, fn, config, run_dir, rid): rid for rid, config, run_dir in tasks
            }
        for future in as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # BrokenProcessPool, unpicklable result, ...
                yield failed(futures[future], exc)
    except BaseException:  # interrupted, or closed early by a failing consumer: stop the runs in flight
        _terminate_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Run the block with SIGINT / SIGTERM recorded instead of handled; handle the first one after it.

    Python-level handlers, not a blocked signal mask: the fork server started in the block inherits a mask
    across exec (its workers could then never be terminated), but not a Python handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        handler = previous[received[0]]
        if callable(handler):
            handler(received[0], None)  # KeyboardInterrupt, or the CLI's SIGTERM handler
        elif handler == signal.SIG_DFL:
            signal.raise_signal(received[0])


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes (no public API for it before Python 3.14)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError(
            "cluster= needs Dask distributed: pip install 'flatminima[cluster]' (dask[distributed])"
        ) from None
    return distributed


def dask_cluster(tasks: Sequence[Task], fn: RunFn, cluster: Any) -> Generator[Outcome, None, None]:
    """Run the tasks on a Dask distributed cluster (address, Client or cluster object)."""
    distributed = _import_distributed()
    own = not isinstance(cluster, distributed.Client)
    if own:
        try:
            client = distributed.Client(cluster)
        except OSError as exc:
            raise ConfigError(f"cannot connect to Dask cluster {cluster!r}: {exc}") from None
    else:
        client = cluster
    tag = uuid.uuid4().hex[:8]
    try:
        futures = {
            client.submit(
                execute_run_single_threaded,
                fn,
                config,
                run_dir,
                rid,
                key=f"flatminima-run-{rid}-{tag}",
                pure=False,
            ): rid
            for rid, config, run_dir in tasks
        }
        for future in distributed.as_completed(futures):
            try:
                yield future.result()
            except Exception as exc:  # KilledWorker, CommClosedError, ...
                yield failed(futures[future], exc)
            future.release()
    finally:
        if own:
            client.close()
