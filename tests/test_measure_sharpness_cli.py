"""``flatminima measure epsilon-sharpness | adaptive-sharpness | preconditioned-sharpness | noise-scale``: the
JSON equals the library's numbers; a missing or wrong optimizer state is one ``error:`` line and exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import flatminima as fm
from flatminima.cli import measure as measure_cli

from .test_curvature_cli import _FakeRun, _measure


@pytest.fixture
def run(tiny_mlp, tiny_data, tmp_path, monkeypatch):
    x, y = tiny_data
    fake = _FakeRun(tiny_mlp, x, y + 2.0, tmp_path)
    monkeypatch.setattr(measure_cli, "_load_run", lambda path: fake)
    return fake


def _result(tmp_path, what: str) -> dict:
    return json.loads((tmp_path / f"measure-{what}.json").read_text())["result"]


def test_epsilon_and_adaptive_sharpness(run, tmp_path) -> None:
    assert _measure("epsilon-sharpness", "--run", str(tmp_path), "--eps", "1e-2", "--subspace", "5") == 0
    got = _result(tmp_path, "epsilon-sharpness")
    ref = fm.epsilon_sharpness(run.objective(), eps=1e-2, subspace=5)
    assert got["value"] == pytest.approx(ref.value, rel=1e-10)
    assert got["extra"]["subspace_dim"] == 5 and "delta" not in got["extra"]
    args = ["--rho", "0.1", "--norm", "inf", "--standard", "--m", "5", "--ascent-steps", "10"]
    assert _measure("adaptive-sharpness", "--run", str(tmp_path), *args) == 0
    got = _result(tmp_path, "adaptive-sharpness")
    ref = fm.adaptive_sharpness(run.objective(), rho=0.1, norm="inf", adaptive=False, m=5, steps=10)
    assert got["value"] == pytest.approx(ref.value, rel=1e-10) and got["extra"]["batches"] == 2
    assert _measure("adaptive-sharpness", "--run", str(tmp_path), "--kind", "average", "--samples", "7") == 0
    assert _result(tmp_path, "adaptive-sharpness")["extra"]["samples_per_batch"] == 7


def test_noise_scale(run, tmp_path) -> None:
    assert _measure("noise-scale", "--run", str(tmp_path)) == 0
    got = _result(tmp_path, "noise-scale")
    ref = fm.noise_scale(run.objective())
    assert got["value"] == pytest.approx(ref.value, rel=1e-10)
    assert got["stderr"] == pytest.approx(ref.stderr, rel=1e-10)


def _adam_state(run, path, opt_cls=torch.optim.Adam, **kw) -> torch.optim.Optimizer:
    opt = opt_cls(run.model.parameters(), lr=0.01, **kw)
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(run.model(run.x), run.y).backward()
        opt.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(opt.state_dict(), path)  # what the trainer writes
    return opt


def test_preconditioned_sharpness_from_the_run_directory(run, tmp_path) -> None:
    opt = _adam_state(run, tmp_path / "checkpoints" / "final.optim.pt")
    assert _measure("preconditioned-sharpness", "--run", str(tmp_path), "--tol", "1e-8") == 0
    got = _result(tmp_path, "preconditioned-sharpness")
    ref = fm.preconditioned_sharpness(run.objective(), opt, tol=1e-8)
    assert got["value"] == pytest.approx(ref.value, rel=1e-8)
    assert got["extra"]["threshold"] == pytest.approx(38 / 0.01)
    assert got["extra"]["stable"] == ref.extra["stable"]
    other = tmp_path / "elsewhere.pt"
    _adam_state(run, other, torch.optim.RMSprop)
    assert _measure("preconditioned-sharpness", "--run", str(tmp_path), "--optimizer-state", str(other)) == 0
    assert _result(tmp_path, "preconditioned-sharpness")["extra"]["optimizer"] == "rmsprop"


@pytest.mark.parametrize("case", ["missing", "sgd", "garbage"])
def test_preconditioned_sharpness_bad_state(run, tmp_path, capsys, case: str) -> None:
    path = tmp_path / "checkpoints" / "final.optim.pt"
    if case == "sgd":
        _adam_state(run, path, torch.optim.SGD, momentum=0.9)
    elif case == "garbage":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not a torch file")
    assert _measure("preconditioned-sharpness", "--run", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert {"missing": "no optimizer state", "sgd": "not an Adam", "garbage": "cannot read"}[case] in err[0]
    assert not (tmp_path / "measure-preconditioned-sharpness.json").exists()
