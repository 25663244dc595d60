"""``flatminima measure``: dispatch, JSON output (atomic), exit codes; the run is faked (no training here)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from flatminima import Objective
from flatminima.cli import main
from flatminima.cli import measure as measure_cli
from flatminima.curvature import sharpness

from .test_curvature_eigen import one_thread  # noqa: F401  (fixture)


class _FakeRun:
    def __init__(self, model, x, y, path) -> None:
        self.model, self.x, self.y, self.path = model, x, y, path
        self.config = SimpleNamespace(loss="mse", phases=[SimpleNamespace(lr=0.05, batch_size=None)])

    def objective(self, split: str = "train", params=None, chunk_size=None, bn="eval") -> Objective:
        return Objective(self.model, loss="mse", x=self.x, y=self.y, chunk_size=chunk_size)


@pytest.fixture
def fake_run(tiny_mlp, tiny_data, tmp_path, monkeypatch):
    x, y = tiny_data
    run = _FakeRun(tiny_mlp, x, y, tmp_path)
    monkeypatch.setattr(measure_cli, "_load_run", lambda path: run)
    return run


def _measure(*args: str) -> int:
    try:
        main(["measure", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_sharpness_json_matches_the_library(fake_run, tmp_path, capsys):
    assert _measure("sharpness", "--run", str(tmp_path), "--tol", "1e-8") == 0
    data = json.loads((tmp_path / "measure-sharpness.json").read_text())
    ref = sharpness(fake_run.objective(), tol=1e-8)
    assert data["what"] == "sharpness"
    assert data["result"]["value"] == pytest.approx(ref.value, rel=1e-10)
    assert "eigenvector" not in data["result"]["extra"]
    assert "sharpness" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["measure-sharpness.json"]  # no temporary file left


def test_stability_nonuniformity_trace_spectrum(fake_run, tmp_path):
    assert _measure("stability", "--run", str(tmp_path), "--batch-size", "2", "--n", "8") == 0
    st = json.loads((tmp_path / "measure-stability.json").read_text())["result"]
    assert st["lr"] == 0.05 and st["batch_size"] == 2 and st["n"] == 8  # lr from the run's last phase
    assert _measure("nonuniformity", "--run", str(tmp_path), "--method", "exact") == 0
    assert _measure("trace", "--run", str(tmp_path), "--matvecs", "12") == 0
    tr = json.loads((tmp_path / "measure-trace.json").read_text())["result"]
    assert tr["matvecs"] == 12 and tr["stderr"] > 0
    assert _measure("spectrum", "--run", str(tmp_path), "--steps", "10", "--runs", "2", "--k", "3") == 0
    sp = json.loads((tmp_path / "measure-spectrum.json").read_text())["result"]
    assert len(sp["top_eigenvalues"]) == 3 and (tmp_path / "measure-spectrum.png").is_file()
    assert sp["top_eigenvalues"][0] == pytest.approx(
        sharpness(fake_run.objective(), tol=1e-8).value, rel=1e-6
    )


def test_bad_input_exits_with_code_2(fake_run, tmp_path, capsys):
    assert _measure("curvature", "--run", str(tmp_path)) == 2
    assert "unknown measurement 'curvature'" in capsys.readouterr().err
    assert _measure("stability", "--run", str(tmp_path), "--lr", "-1") == 2
    assert _measure("sharpness", "--run", str(tmp_path), "--n", "0") == 2
    assert not list(tmp_path.glob("measure-*.json"))


def test_extra_measurements_from_measure_probes(fake_run, tmp_path, monkeypatch):
    calls = []

    def flatness(run, options):
        calls.append(options["seed"])
        return {"radius": 1.5, "tensor": torch.tensor([1.0, 2.0])}

    from flatminima.cli import measure_probes

    monkeypatch.setitem(measure_probes.PROBES, "flatness", flatness)
    assert _measure("flatness", "--run", str(tmp_path), "--seed", "3") == 0
    data = json.loads((tmp_path / "measure-flatness.json").read_text())
    assert calls == [3] and data["result"] == {"radius": 1.5, "tensor": [1.0, 2.0]}
