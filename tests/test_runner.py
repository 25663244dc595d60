"""Sweep expansion, the SQLite results store, local executors and crash-safe resume (SIGKILL)."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flatminima.errors import ConfigError, DataNotFoundError, UnknownNameError
from flatminima.runner import ResultsStore, Sweep, expand, run_dir, run_id, run_sweep

from .test_runner_helpers import (
    bad_return,
    dies_on_one,
    fails_on_odd,
    quadratic_gd,
    slow_square,
    thread_count,
    typed_values,
)

ROOT = Path(__file__).resolve().parents[1]
BASE = {"curv": 2.0, "x0": 1.0, "steps": 6, "opt": {"lr": 0.1, "momentum": 0.0}}


def _without(rows: list[dict], *keys: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in keys} for row in rows]


def _gd_closed_form(curv: float, lr: float, x0: float, steps: int) -> float:
    return (1.0 - lr * curv) ** steps * x0


# -- expansion ----------
def test_expand_is_the_cartesian_product_in_order_with_nested_keys() -> None:
    sweep = Sweep(BASE, {"opt.lr": [0.1, 0.2], "x0": [1.0, -1.0, 3.0]}, name="s")
    points = sweep.expand()
    assert len(points) == len(sweep) == 6
    assert [(p.values["opt.lr"], p.values["x0"]) for p in points] == [
        (0.1, 1.0), (0.1, -1.0), (0.1, 3.0), (0.2, 1.0), (0.2, -1.0), (0.2, 3.0)
    ]  # fmt: skip
    for p in points:
        assert p.config["opt"] == {"lr": p.values["opt.lr"], "momentum": 0.0}
        assert p.config["x0"] == p.values["x0"]
        assert p.run_id == run_id(p.config)
    assert BASE["opt"]["lr"] == 0.1  # the base is not mutated
    assert len({p.run_id for p in points}) == 6


def test_run_ids_are_stable_and_depend_only_on_the_resolved_config() -> None:
    a = Sweep(BASE, {"opt.lr": [0.1, 0.2], "x0": [1.0, 2.0]}, name="a").expand()
    b = Sweep(dict(reversed(list(BASE.items()))), {"x0": [1.0, 2.0], "opt.lr": [0.1, 0.2]}, name="b").expand()
    assert {p.run_id for p in a} == {p.run_id for p in b}
    assert [p.run_id for p in a] == [
        p.run_id for p in expand(Sweep(BASE, {"opt.lr": [0.1, 0.2], "x0": [1.0, 2.0]}))
    ]
    assert len(run_id(BASE)) == 16
    assert run_id(BASE) != run_id({**BASE, "x0": 1.0000001})


def test_expand_creates_missing_keys_and_an_empty_grid_is_one_run() -> None:
    points = Sweep({"a": 1}, {"model.width": [4, 8]}).expand()
    assert [p.config for p in points] == [{"a": 1, "model": {"width": 4}}, {"a": 1, "model": {"width": 8}}]
    assert [p.config for p in Sweep({"a": 1}).expand()] == [{"a": 1}]


@pytest.mark.parametrize(
    ("base", "grid"),
    [
        ({"a": 1}, {"a": []}),  # empty value list
        ({"a": 1}, {"a": 3}),  # not a list
        ({"a": 1}, [("a", [1])]),  # grid not a dict
        ([1], {}),  # base not a dict
        ({"a": 1}, {"a.b": [1, 2]}),  # descends through a non-dict
        ({"a": 1}, {"a..b": [1]}),  # malformed key
        ({"a": object()}, {}),  # not JSON
        ({"a": math.nan}, {}),  # NaN would not hash stably
        ({"a": 1}, {"a": [2, 2]}),  # two points give the same config
        ({"a": {"b": 1}}, {"a": [{"b": 1}, {"b": 2}], "a.b": [3]}),  # the same, via overlapping keys
    ],
)
def test_bad_sweeps_raise_config_error(base: dict, grid: dict) -> None:
    with pytest.raises(ConfigError):
        Sweep(base, grid).expand()


# -- serial execution and the store ----------
def test_serial_sweep_stores_results_metrics_and_divergence(tmp_path: Path) -> None:
    sweep = Sweep(BASE, {"opt.lr": [0.1, 0.7, 1e80], "x0": [1.0, -2.0]}, name="gd")
    store = run_sweep(sweep, quadratic_gd, tmp_path, workers=1, progress=False)
    table = store.table()
    assert [row["run_id"] for row in table] == sweep.run_ids()
    assert {row["run_status"] for row in table} == {"done"}
    for row in table:
        lr, x0 = row["opt.lr"], row["x0"]
        if lr == 1e80:  # |1 - lr a| > 1: the iterate overflows to inf, then inf - inf = nan
            assert row["status"] == "diverged" and math.isnan(row["loss"])
            continue
        x = _gd_closed_form(2.0, lr, x0, 6)
        assert row["status"] == "finished"
        assert row["x"] == pytest.approx(x, rel=1e-12)
        assert row["loss"] == pytest.approx(x * x, rel=1e-12)  # 0.5 * a * x^2 with a = 2
        metrics = store.metrics(row["run_id"], name="loss")
        assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
        for m in metrics:
            assert m["value"] == pytest.approx(_gd_closed_form(2.0, lr, x0, m["step"]) ** 2, rel=1e-12)
        assert (run_dir(tmp_path, row["run_id"]) / "final.json").is_file()
    diverged = next(r for r in table if r["opt.lr"] == 1e80)
    trace = [m["value"] for m in store.metrics(diverged["run_id"])]
    assert math.isinf(trace[3]) and all(math.isnan(v) for v in trace[4:])  # inf kept, NaN survives SQL NULL
    record = store.runs([diverged["run_id"]])[0]
    assert record.config["opt"]["lr"] == 1e80 and record.seconds >= 0 and record.started <= record.finished
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = {
            t: [c[1] for c in conn.execute(f"PRAGMA table_info({t})")] for t in ("runs", "results", "metrics")
        }
    assert columns == {
        "runs": ["run_id", "config", "point", "status", "started", "finished", "seconds", "error"],
        "results": ["run_id", "key", "value"],
        "metrics": ["run_id", "step", "name", "value"],
    }
    # A reader opened on the directory sees the same thing.
    with ResultsStore(tmp_path) as reader:
        assert _without(reader.table(), "loss") == _without(table, "loss")


def test_failed_runs_are_recorded_the_sweep_continues_and_a_rerun_redoes_only_them(tmp_path: Path) -> None:
    sweep = Sweep({"v": 0}, {"v": [0, 1, 2, 3]}, name="odd")
    store = run_sweep(sweep, fails_on_odd, tmp_path, progress=False)
    rows = {row["v"]: row for row in store.table()}
    assert [rows[v]["run_status"] for v in range(4)] == ["done", "failed", "done", "failed"]
    assert rows[1]["error"].startswith("RuntimeError: odd value 1")
    assert (
        rows[0]["result.v"] == 0 and rows[1].get("result.v") is None
    )  # result key collides with the point key
    started = {r.run_id: r.started for r in store.runs()}
    store.close()
    time.sleep(0.01)
    store = run_sweep(sweep, fails_on_odd, tmp_path, progress=False)
    again = {r.run_id: r.started for r in store.runs()}
    for r in store.runs():
        assert (again[r.run_id] == started[r.run_id]) == (r.status == "done")


def test_bad_return_values_fail_the_run_not_the_sweep(tmp_path: Path) -> None:
    store = run_sweep(Sweep({"v": 0}, {"v": [0, 1, 2]}), bad_return, tmp_path, progress=False)
    errors = [row["error"].splitlines()[0] for row in store.table()]
    assert errors[0].startswith("TypeError: run function must return a dict")
    assert "not JSON-serialisable" in errors[1]
    assert errors[2].startswith("ValueError: metrics[0]: need an integer step")


def test_numpy_torch_and_path_results_are_converted(tmp_path: Path) -> None:
    store = run_sweep(Sweep({"v": 0}), typed_values, tmp_path, progress=False)
    (row,) = store.table()
    assert row["np_float"] == 0.25 and row["np_array"] == [0, 1, 2] and row["tensor"] == [[1.0, 2.0]]
    assert row["path"] == str(run_dir(tmp_path, row["run_id"]))
    assert store.metrics(row["run_id"]) == [{"step": 2, "name": "loss", "value": 0.5}]


def test_extending_a_sweep_runs_only_the_new_points(tmp_path: Path) -> None:
    first = run_sweep(Sweep(BASE, {"x0": [1.0, 2.0]}), quadratic_gd, tmp_path, progress=False)
    started = {r.run_id: r.started for r in first.runs()}
    first.close()
    bigger = Sweep(BASE, {"x0": [1.0, 2.0, 3.0]})
    store = run_sweep(bigger, quadratic_gd, tmp_path, progress=False)
    runs = store.runs()
    assert [r.run_id for r in runs] == bigger.run_ids()
    assert all(r.started == started[r.run_id] for r in runs[:2]) and runs[2].run_id not in started
    assert [row["x0"] for row in store.table(bigger.run_ids()[::-1])] == [3.0, 2.0, 1.0]


def test_store_errors(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError):
        ResultsStore(tmp_path / "nothing")
    store = run_sweep(Sweep({"v": 1}), fails_on_odd, tmp_path, progress=False)
    with pytest.raises(UnknownNameError):
        store.results("0123456789abcdef")
    with pytest.raises(ConfigError):
        run_sweep(Sweep({"v": 1}), fails_on_odd, tmp_path, workers=0)
    with pytest.raises(ConfigError):
        run_sweep(Sweep({"v": 1}, {"v": [2, 4]}), lambda c, d: {}, tmp_path / "x", workers=2)


def test_one_writer_per_directory(tmp_path: Path) -> None:
    with open(tmp_path / "results.sqlite.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="another sweep"):
            run_sweep(Sweep({"v": 0}), fails_on_odd, tmp_path, progress=False)


# -- process pool ----------
def test_process_pool_matches_serial_and_workers_are_single_threaded(tmp_path: Path) -> None:
    sweep = Sweep(BASE, {"opt.lr": [0.1, 0.3, 1e80], "x0": [1.0, -1.0]})
    serial = run_sweep(sweep, quadratic_gd, tmp_path / "serial", progress=False).table()
    pooled = run_sweep(sweep, quadratic_gd, tmp_path / "pool", workers=2, progress=False).table()
    assert [r["pid"] != os.getpid() for r in pooled] == [True] * 6
    assert repr(_without(pooled, "pid")) == repr(_without(serial, "pid"))  # repr: NaN == NaN
    threads = run_sweep(
        Sweep({"v": 0}, {"v": [0, 1, 2]}), thread_count, tmp_path / "threads", workers=2
    ).table()
    assert {(r["threads"], r["omp"]) for r in threads} == {(1, "1")}


def test_a_dying_worker_fails_its_run_and_the_sweep_returns(tmp_path: Path) -> None:
    store = run_sweep(Sweep({"v": 0}, {"v": [0, 1]}), dies_on_one, tmp_path, workers=2, progress=False)
    failed = {row["v"]: row for row in store.table() if row["run_status"] == "failed"}
    assert 1 in failed and failed[1]["error"].startswith("BrokenProcessPool")


# -- crash safety ----------
KILL_SCRIPT = """
import sys
from flatminima.runner import Sweep, run_sweep
from tests.test_runner_helpers import slow_square
if __name__ == "__main__":
    sweep = Sweep({{"v": 0, "sleep": 0.25}}, {{"v": list(range(8))}}, name="kill")
    run_sweep(sweep, slow_square, sys.argv[1], workers={workers}, progress=False)
"""


def _done(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'done'").fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def _live_group_members(pgid: int) -> list[int]:
    """Processes (not zombies) of process group ``pgid``, from /proc/PID/stat (Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid pgrp ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(stat.parent.name))
    return members


def _dump(db: Path) -> tuple[list, list, list]:
    with sqlite3.connect(db) as conn:
        runs = conn.execute(
            "SELECT run_id, config, point, status, error FROM runs ORDER BY run_id"
        ).fetchall()
        results = conn.execute("SELECT run_id, key, value FROM results ORDER BY run_id, key").fetchall()
        metrics = conn.execute(
            "SELECT run_id, step, name, value FROM metrics ORDER BY run_id, step"
        ).fetchall()
    return runs, results, metrics


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_sweep_then_resume_equals_an_uninterrupted_sweep(tmp_path: Path, workers: int) -> None:
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = textwrap.dedent(KILL_SCRIPT.format(workers=workers))
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(killed)], cwd=ROOT, env=env, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 60
        while _done(killed / "results.sqlite") < 2:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no run finished within 60 s"
            time.sleep(0.02)
        if workers > 1:  # kill the coordinator alone: its orphaned workers must exit by themselves
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            while _live_group_members(proc.pid):
                assert time.monotonic() < deadline, "orphaned workers did not exit"
                time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    runs, _, _ = _dump(killed / "results.sqlite")
    n_done = sum(status == "done" for _, _, _, status, _ in runs)
    assert len(runs) == 8 and 2 <= n_done < 8  # killed mid-sweep
    done_before = {rid: started for rid, started in sqlite3.connect(killed / "results.sqlite").execute(
        "SELECT run_id, started FROM runs WHERE status = 'done'")}  # fmt: skip

    sweep = Sweep({"v": 0, "sleep": 0.25}, {"v": list(range(8))}, name="kill")  # the killed command's sweep
    resumed = run_sweep(sweep, slow_square, killed, workers=workers, progress=False)
    for record in resumed.runs():
        if record.run_id in done_before:  # finished runs were skipped, not redone
            assert record.started == done_before[record.run_id]
    resumed.close()
    reference = run_sweep(sweep, slow_square, tmp_path / "reference", workers=1, progress=False)
    reference.close()
    assert _dump(killed / "results.sqlite") == _dump(tmp_path / "reference" / "results.sqlite")
    _, results, metrics = _dump(killed / "results.sqlite")
    assert len(results) == 8 and len(metrics) == 8 * 3  # no duplicate and no lost row
