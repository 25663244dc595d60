"""The experiment framework: registry, run() bookkeeping, result.json round trip, module auto-import."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import flatminima.experiments as experiments
from flatminima._io import atomic_write_text
from flatminima.errors import ConfigError, DataNotFoundError, UnknownNameError
from flatminima.experiments import (
    ComparisonRow,
    Experiment,
    ExperimentResult,
    Findings,
    RunContext,
    available,
    get,
    register,
    unregister,
)
from flatminima.experiments.base import verdict
from flatminima.report import new_figure, save_figure
from flatminima.runner import Sweep

from .test_runner_helpers import quadratic_gd

CURV = 2.0


class ToyGD(Experiment):
    """GD on f(x) = a x^2 / 2 converges iff lr < 2 / a (the linear-stability edge, Wu, Ma & E 2018)."""

    name = "toy_gd_edge"
    title = "GD on a quadratic converges iff lr < 2/a"
    paper = "Wu, Ma & E 2018, Sec. 3 (1-D example)"
    claim = "the loss after many steps vanishes for lr < 2/a and grows for lr > 2/a"

    def compute(self, ctx: RunContext) -> Findings:
        if ctx.scale == "paper" and not (ctx.out_dir / "paper-data.npz").exists():
            raise DataNotFoundError(f"paper scale needs {ctx.out_dir / 'paper-data.npz'}")
        steps = {"smoke": 20, "default": 60, "paper": 200}[ctx.scale]
        lrs = [0.3, 0.9, 1.1]
        base = {"curv": CURV, "x0": 1.0, "steps": steps, "opt": {"lr": 0.1}, "seed": ctx.seed}
        store = ctx.run_sweep(Sweep(base, {"opt.lr": lrs}, name=self.name), quadratic_gd)
        rows = []
        fig, ax = new_figure()
        for row in store.table():
            lr = row["opt.lr"]
            converged = row["loss"] < 1e-3
            rows.append(
                ComparisonRow(
                    f"final loss, lr={lr}", row["loss"], 0.0, "→ 0 iff lr < 2/a", converged == (lr < 2 / CURV)
                )
            )
            trace = store.metrics(row["run_id"], name="loss")
            ax.semilogy([m["step"] for m in trace], [m["value"] for m in trace], label=f"lr={lr}")
        ax.legend()
        save_figure(fig, ctx.out_dir / "loss.png")
        return Findings(rows=rows, figures=["loss.png"], config={"base": base, "lrs": lrs}, notes="a toy")


@pytest.fixture
def toy() -> Iterator[Experiment]:
    register(ToyGD)
    yield get(ToyGD.name)
    unregister(ToyGD.name)


def test_run_saves_a_result_that_loads_back(toy: Experiment, tmp_path: Path) -> None:
    result = toy.run("smoke", tmp_path, seed=3)
    assert result.passed is True and len(result.rows) == 3
    for row in result.rows:  # independent reference: the closed form (1 - lr a)^t x0
        lr = float(row.quantity.split("=")[1])
        assert row.ours == pytest.approx((1 - lr * CURV) ** 40, rel=1e-9)  # loss = x^2 (a = 2), t = 20
    assert result.config["scale"] == "smoke" and result.scale == "smoke" and result.seed == 3
    assert result.seconds > 0 and "torch" in result.versions and "python" in result.versions
    loaded = ExperimentResult.load(tmp_path)
    assert loaded == result
    assert json.loads((tmp_path / "result.json").read_text())["rows"][0]["relation"] == "→ 0 iff lr < 2/a"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_registry_lookup_and_errors(toy: Experiment, tmp_path: Path) -> None:
    assert ToyGD.name in available() and available() == sorted(available())
    assert isinstance(get(ToyGD.name), ToyGD)
    with pytest.raises(UnknownNameError, match="toy_gd_edge"):  # the message lists the choices
        get("no_such_experiment")
    with pytest.raises(UnknownNameError, match="scale"):
        toy.run("huge", tmp_path)
    with pytest.raises(ConfigError):
        toy.run("smoke", tmp_path, workers=0)
    assert not (tmp_path / "result.json").exists()

    class Impostor(ToyGD):
        pass

    with pytest.raises(ConfigError, match="already registered"):
        register(Impostor)
    register(ToyGD())  # the same class again (a reload) is fine

    class Nameless(Experiment):
        def compute(self, ctx: RunContext) -> Findings:
            return Findings(rows=[])

    with pytest.raises(ConfigError, match="name"):
        register(Nameless)


def test_paper_scale_without_data_raises_and_writes_nothing(toy: Experiment, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"paper-data\.npz"):
        toy.run("paper", tmp_path)
    assert not (tmp_path / "result.json").exists()
    with pytest.raises(DataNotFoundError):
        toy.run("paper", tmp_path / "new" / "dir")
    assert not (tmp_path / "new" / "dir").exists()  # the directory it created is removed again


def test_verdict_is_all_checked_rows_or_none() -> None:
    def row(h: bool | None) -> ComparisonRow:
        return ComparisonRow("q", 1.0, 1.0, "=", h)

    assert verdict([row(True), row(None)]) is True
    assert verdict([row(True), row(False)]) is False
    assert verdict([row(None)]) is None and verdict([]) is None


def test_result_json_keeps_nan_and_failed_writes_leave_the_old_file(tmp_path: Path, monkeypatch) -> None:
    result = ExperimentResult("x", "t", "p", "c", rows=[ComparisonRow("q", math.nan, 1, "=", None)])
    path = result.save(tmp_path)
    assert math.isnan(ExperimentResult.load(path).rows[0].ours)
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "half")
    assert path.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    with pytest.raises(TypeError):
        ExperimentResult("x", "t", "p", "c", config={"bad": object()}).save(tmp_path)
    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "result.json").write_text("{not json")
    with pytest.raises(ConfigError):
        ExperimentResult.load(tmp_path / "garbage")
    with pytest.raises(DataNotFoundError):
        ExperimentResult.load(tmp_path / "nowhere")


def test_modules_named_paper_topic_are_imported_automatically(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "zz_autoimport.py").write_text(
        "from flatminima.experiments.base import Experiment, Findings, register\n"
        "@register\n"
        "class Auto(Experiment):\n"
        "    name, title, paper, claim = 'zz_auto', 'auto', 'none', 'none'\n"
        "    def compute(self, ctx):\n"
        "        return Findings(rows=[])\n"
    )
    (tmp_path / "helpers.py").write_text("raise RuntimeError('helpers must not be imported')\n")
    monkeypatch.setattr(experiments, "__path__", [*experiments.__path__, str(tmp_path)])
    try:
        names = experiments._import_experiment_modules()
        assert "zz_autoimport" in names and "helpers" not in names
        assert "zz_auto" in available()
    finally:
        unregister("zz_auto")
        sys.modules.pop("flatminima.experiments.zz_autoimport", None)
