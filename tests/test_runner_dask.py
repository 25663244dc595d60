"""The Dask distributed executor on a LocalCluster (2 single-threaded worker processes)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flatminima.errors import ConfigError
from flatminima.runner import Sweep, run_sweep

from .test_runner_helpers import fails_on_odd, quadratic_gd, thread_count

distributed = pytest.importorskip("distributed")

BASE = {"curv": 2.0, "x0": 1.0, "steps": 6, "opt": {"lr": 0.1}}


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def _without_pid(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "pid"} for row in rows]


def test_dask_cluster_matches_serial_and_runs_on_single_threaded_workers(client: Any, tmp_path: Path) -> None:
    sweep = Sweep(BASE, {"opt.lr": [0.1, 0.3, 1e80], "x0": [1.0, -1.0]})
    serial = run_sweep(sweep, quadratic_gd, tmp_path / "serial", progress=False).table()
    on_dask = run_sweep(sweep, quadratic_gd, tmp_path / "dask", cluster=client, progress=False).table()
    assert repr(_without_pid(on_dask)) == repr(_without_pid(serial))  # repr: NaN == NaN
    assert all(row["pid"] != os.getpid() for row in on_dask)
    small = Sweep({"v": 0}, {"v": [0, 1, 2]})
    threads = run_sweep(small, thread_count, tmp_path / "t", cluster=client, progress=False).table()
    assert {(r["threads"], r["omp"]) for r in threads} == {(1, "1")}
    assert client.status == "running"  # a Client passed in is left open


def test_dask_by_address_records_failures(client: Any, tmp_path: Path) -> None:
    sweep = Sweep({"v": 0}, {"v": [0, 1, 2]})
    store = run_sweep(sweep, fails_on_odd, tmp_path, cluster=client.scheduler.address, progress=False)
    rows = store.table()
    assert [r["run_status"] for r in rows] == ["done", "failed", "done"]
    assert rows[1]["error"].startswith("RuntimeError: odd value 1")


def test_missing_dask_is_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ConfigError, match=r"dask\[distributed\]"):
        run_sweep(Sweep({"v": 0}), fails_on_odd, tmp_path, cluster="tcp://127.0.0.1:1", progress=False)
