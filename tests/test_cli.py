"""The ``flatminima`` commands demo / train / list: success paths and every kind of bad input (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flatminima.cli import main

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "seed": 0,
    "data": {"name": "digits", "n_train": 60},
    "model": {"name": "mlp", "widths": [8]},
    "loss": "mse",
    "phases": [
        {"optimizer": "gd", "lr": 0.5, "max_steps": 6},
        {"optimizer": "sgd", "lr": 0.1, "batch_size": 10, "max_steps": 4},
    ],
    "log_every": 2,
}


def _config(tmp_path: Path, data: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _changed(path: tuple, value: object) -> dict:
    data = json.loads(json.dumps(TINY))
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def _needs_data_and_models() -> None:
    pytest.importorskip("flatminima.data")
    pytest.importorskip("flatminima.models")


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("seed: 0\nphases: [\n", "malformed YAML"),
        (_changed(("phases", 0, "lr"), -0.5), "phases.0.lr: must be > 0"),
        (_changed(("phases", 0, "momentun"), 0.9), "phases.0.momentun: unknown key"),
        (_changed(("phases", 0, "optimizer"), "adamw"), "unknown optimizer 'adamw'"),
        ({k: v for k, v in TINY.items() if k != "model"}, "model: required field missing"),
    ],
)
def test_bad_config_exits_2_with_one_line(tmp_path, capsys, config, message):
    out = tmp_path / "out"
    code, stdout, stderr = _run(["train", str(_config(tmp_path, config)), "--out", str(out)], capsys)
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and message in stderr
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    code, _, stderr = _run(["train", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and stderr.startswith("error: config file") and "not found" in stderr


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("data", "name"), "nosuchdata", "unknown"),
        (("model", "name"), "nosuchmodel", "unknown"),
        (("model", "activation"), "swish", "swish"),
        (("phases", 1, "batch_size"), 61, "phases.1.batch_size: 61 exceeds the 60 training examples"),
    ],
)
def test_bad_names_and_sizes_exit_2_and_write_nothing(tmp_path, capsys, path, value, message):
    _needs_data_and_models()
    out = tmp_path / "out"
    config = _config(tmp_path, _changed(path, value))
    code, _, stderr = _run(["train", str(config), "--out", str(out)], capsys)
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
    assert message in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


def test_missing_data_files_exit_2(tmp_path, capsys):
    _needs_data_and_models()
    data = _changed(("data", "name"), "mnist")
    data["data"]["root"] = str(tmp_path / "empty")
    code, _, stderr = _run(["train", str(_config(tmp_path, data)), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and stderr.startswith("error: ") and stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_refuses_to_overwrite_a_directory_that_is_not_a_run(tmp_path, capsys):
    _needs_data_and_models()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    code, _, stderr = _run(["train", str(_config(tmp_path, TINY)), "--out", str(other)], capsys)
    assert code == 2 and "not a flatminima run directory" in stderr
    assert sorted(p.name for p in other.iterdir()) == ["thesis.tex"]


def test_unknown_command_and_bad_option_exit_2(capsys):
    code, _, stderr = _run(["trian"], capsys)
    assert code == 2 and stderr.startswith("error: ")
    code, _, stderr = _run(["train", "x.yaml", "--seed", "many"], capsys)
    assert code == 2 and stderr.startswith("error: ")


# ---------------------------------------------------------------------------------------------- success
def test_train_writes_a_loadable_run(tmp_path, capsys):
    _needs_data_and_models()
    from flatminima.training import load_run

    out = tmp_path / "run"
    code, stdout, stderr = _run(
        ["train", str(_config(tmp_path, TINY)), "--out", str(out), "--seed", "5"], capsys
    )
    assert code == 0, stderr
    assert "finished" in stdout and "train_loss" in stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 10
    run = load_run(out)
    assert run.config.seed == 5  # the resolved config records the override
    # The reloaded model reproduces the logged final training loss (an independent forward pass).
    assert run.objective().value() == pytest.approx(summary["final"]["train_loss"], rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.yaml"]


def test_same_seed_gives_identical_runs(tmp_path, capsys):
    _needs_data_and_models()
    config = _config(tmp_path, TINY)
    for name in ("a", "b"):
        assert _run(["train", str(config), "--out", str(tmp_path / name)], capsys)[0] == 0
    rows = [(tmp_path / name / "summary.json").read_text() for name in ("a", "b")]
    finals = [json.loads(r)["final"] for r in rows]
    assert finals[0] == finals[1]


def test_list_runs(capsys):
    code, stdout, _ = _run(["list"], capsys)
    assert code == 0 and stdout.strip()


def test_demo_small(tmp_path, monkeypatch, capsys):
    """The demo pipeline end to end at a tiny size (the real demo is timed in the report, not here)."""
    _needs_data_and_models()
    from flatminima.training import demo as demo_module

    real = demo_module.run_demo
    monkeypatch.setattr(
        demo_module,
        "run_demo",
        lambda out, seed=0, measure=None: real(
            out, steps=8, n_train=100, widths=(16,), seed=seed, measure=measure
        ),
    )
    code, stdout, stderr = _run(["demo", "--quick", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, stderr
    assert (tmp_path / "d" / "loss_curves.png").stat().st_size > 1000
    assert "loss_curves.png" in stdout and "2/lr" in stdout
    rows = json.loads((tmp_path / "d" / "demo.json").read_text())["rows"]
    assert [r["lr"] for r in rows] == list(demo_module.DEMO_LRS)
    assert all(r["sharpness"] > 0 for r in rows)


def test_demo_runs_experiments_and_writes_report(tmp_path, monkeypatch, capsys):
    """The full demo path (experiments + report), with one fast experiment at smoke scale."""
    from flatminima.cli import train_cmds

    monkeypatch.setattr(train_cmds, "DEMO_EXPERIMENTS", ("theory2b-langevin",))
    code, stdout, stderr = _run(["demo", "--scale", "smoke", "--out", str(tmp_path / "d")], capsys)
    assert code == 0, stderr
    assert (tmp_path / "d" / "theory2b-langevin" / "result.json").is_file()
    assert "report:" in stdout and (tmp_path / "d" / "report.html").is_file()
    code, _, stderr = _run(["demo", "--scale", "paper", "--out", str(tmp_path / "e")], capsys)
    assert code == 2 and stderr.startswith("error:")


def test_module_entry_point_bad_input_subprocess(tmp_path):
    """The real process: ``python -m flatminima`` exits 2 with one 'error:' line."""
    config = _config(tmp_path, _changed(("phases", 0, "lr"), -1))
    env = {**os.environ, "FLATMINIMA_PROGRESS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "flatminima", "train", str(config), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_demo_measure_hook_sees_the_trained_runs(tmp_path):
    _needs_data_and_models()
    from flatminima.training.demo import run_demo

    def measure(run) -> dict[str, float]:
        return {"reloaded_loss": run.objective().value(), "lr_from_config": run.config.phases[0].lr}

    rows = run_demo(
        tmp_path, lrs=(0.05, 0.3), steps=5, n_train=80, widths=(8,), measure=measure, progress=False
    )
    assert [r["lr"] for r in rows] == [0.05, 0.3] == [r["lr_from_config"] for r in rows]
    for row in rows:
        assert row["steps"] == 5 and row["status"] == "finished"
        assert row["reloaded_loss"] == pytest.approx(row["train_loss"], rel=1e-5)
    assert rows[0]["train_loss"] != rows[1]["train_loss"]


def test_missing_run_directory_exits_2(tmp_path, capsys):
    """``load_run`` on a missing directory is a CheckpointError -> one line, exit 2 (via ``measure``)."""
    from flatminima.cli import app

    if "measure" not in {c.name for c in app.registered_commands}:
        pytest.skip("the measure command is not installed")
    code, _, stderr = _run(["measure", "sharpness", "--run", str(tmp_path / "nope")], capsys)
    assert code == 2 and stderr.startswith("error: run directory") and "not found" in stderr
