"""``flatminima train`` never touches what it did not write: --out ., project folders, read-only places,
and a finished run without --overwrite (issue 10, data loss). Subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLATMINIMA_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
CONFIG = {
    "seed": 0,
    "data": {"name": "digits", "n_train": 60},
    "model": {"name": "mlp", "widths": [8]},
    "loss": "mse",
    "phases": [{"optimizer": "gd", "lr": 0.5, "max_steps": 4}],
    "log_every": 2,
}


def _flatminima(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flatminima", *args], cwd=cwd, env=ENV, capture_output=True, text=True
    )


def _snapshot(path: Path) -> dict[str, bytes | None]:
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))
    }


def _one_error_line(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr


def test_out_dot_in_a_project_with_git_readme_and_config_touches_nothing(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "README.md").write_text("# my project\n")
    (project / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("print('hi')\n")
    before = _snapshot(tmp_path)
    proc = _flatminima(["train", "config.yaml", "--out", "."], cwd=project)
    _one_error_line(proc, "not a flatminima run directory")
    assert _snapshot(tmp_path) == before
    proc = _flatminima(["train", "config.yaml", "--out", ".", "--overwrite"], cwd=project)
    _one_error_line(proc, "not a flatminima run directory")
    assert _snapshot(tmp_path) == before


def test_a_finished_run_is_replaced_only_with_overwrite(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    assert _flatminima(["train", "c.yaml", "--out", "run"], cwd=tmp_path).returncode == 0
    before = _snapshot(tmp_path)
    _one_error_line(_flatminima(["train", "c.yaml", "--out", "run"], cwd=tmp_path), "--overwrite")
    assert _snapshot(tmp_path) == before
    proc = _flatminima(["train", "c.yaml", "--out", "run", "--overwrite"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "run"]


def test_an_unwritable_place_is_refused_before_any_training(tmp_path: Path) -> None:
    if os.geteuid() == 0:  # root writes anywhere: simulate with a file where the parent should be
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
        (tmp_path / "afile").write_text("x")
        proc = _flatminima(["train", "c.yaml", "--out", "afile"], cwd=tmp_path)
        _one_error_line(proc, "is not a directory")
        assert (tmp_path / "afile").read_text() == "x"
        return
    locked = tmp_path / "locked"  # pragma: no cover - not root
    locked.mkdir()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    locked.chmod(0o500)
    try:
        proc = _flatminima(["train", "c.yaml", "--out", "locked/run"], cwd=tmp_path)
        _one_error_line(proc, "permission denied")
    finally:
        locked.chmod(0o700)


def test_sigkill_then_the_same_command_resumes_the_run(tmp_path: Path) -> None:
    slow = {**CONFIG, "phases": [{"optimizer": "gd", "lr": 0.5, "max_steps": 1500}], "resume_every": 50}
    slow["log_every"] = 500
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(slow))
    proc = subprocess.Popen(
        [sys.executable, "-m", "flatminima", "train", "c.yaml", "--out", "run"], cwd=tmp_path, env=ENV
    )
    pointer = tmp_path / ".run.partial" / "resume" / "resume.json"
    try:
        deadline = time.monotonic() + 120
        while not pointer.is_file():
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    step = json.loads(pointer.read_text())["step"]
    again = _flatminima(["train", "c.yaml", "--out", "run"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming run from step {step}" in again.stderr
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 1500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "run"]
