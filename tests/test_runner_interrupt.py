"""An interrupted local-pool sweep stops at once: its workers are terminated (not waited for), no worker
prints a traceback (also when the interrupt lands while the pool is starting), and the runs stay pending."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import os, signal, sqlite3, sys, threading, time
from pathlib import Path
from flatminima.runner import Sweep, run_sweep
from tests.test_runner_helpers import slow_square

def registered(db):
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3
    except sqlite3.Error:
        return False

def interrupt_later(db, delay):
    while not registered(db):  # the runs are registered: the pool starts next
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(os.getpid(), signal.SIGINT)

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job may inherit SIGINT ignored
    start = time.monotonic()
    db = Path(sys.argv[1]) / "results.sqlite"
    threading.Thread(target=interrupt_later, args=(db, float(sys.argv[2])), daemon=True).start()
    sweep = Sweep({"v": 0, "sleep": 300.0}, {"v": [0, 1, 2]}, name="interrupted")
    try:
        run_sweep(sweep, slow_square, sys.argv[1], workers=2, progress=False)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - start:.1f} s")
"""


@pytest.mark.parametrize("delay", [0.0, 15.0])  # during the pool's start (fork server, torch), and after it
def test_interrupted_pool_sweep_terminates_its_workers(tmp_path, delay):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), str(tmp_path / "exp"), str(delay)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and "interrupted after" in proc.stdout, proc.stderr[-3000:]
    assert proc.stderr == ""  # no worker traceback
    # the runs sleep 300 s and write partial.txt after it: none did, so they were terminated, not waited for
    assert not any((tmp_path / "exp").rglob("partial.txt"))
    with sqlite3.connect(tmp_path / "exp" / "results.sqlite") as conn:
        statuses = [s for (s,) in conn.execute("SELECT status FROM runs")]
    assert statuses == ["pending"] * 3  # nothing recorded as done or failed: the next invocation redoes them
