"""The ``flatminima reproduce`` and ``flatminima report`` commands, on a dummy registered experiment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flatminima.cli import main
from flatminima.experiments import ExperimentResult, register, unregister

from .test_experiments_base import ToyGD


@pytest.fixture(autouse=True)
def toy() -> Iterator[None]:
    register(ToyGD)
    yield
    unregister(ToyGD.name)


def test_reproduce_runs_prints_the_comparison_and_writes_the_report(tmp_path: Path, capsys) -> None:
    main(["reproduce", ToyGD.name, "--scale", "smoke", "--out", str(tmp_path), "--seed", "5"])
    out = capsys.readouterr().out
    assert "final loss, lr=0.3" in out and "✓" in out and "claim holds" in out
    assert out.strip().splitlines()[-1] == str(tmp_path / "report.html")
    assert (tmp_path / "report.html").is_file() and (tmp_path / "summary.md").is_file()
    assert ExperimentResult.load(tmp_path).seed == 5


def test_report_command_and_bad_input_exit_2(tmp_path: Path, capsys) -> None:
    main(["reproduce", ToyGD.name, "--scale", "smoke", "--out", str(tmp_path / "toy")])
    capsys.readouterr()
    main(["report", str(tmp_path)])
    assert capsys.readouterr().out.strip() == str(tmp_path / "report.html")
    for argv in (
        ["reproduce", "no_such_experiment", "--out", str(tmp_path / "x")],
        ["reproduce", ToyGD.name, "--scale", "huge", "--out", str(tmp_path / "y")],
        ["reproduce", ToyGD.name, "--workers", "0", "--out", str(tmp_path / "z")],
        ["report", str(tmp_path / "nowhere")],
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
