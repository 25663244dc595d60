"""``flatminima landscape slice|simplex|mds`` and the measure probes, on stub runs (no trainer needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import typer
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from flatminima import Objective
from flatminima.cli import landscape as landscape_cli
from flatminima.cli.measure_probes import PROBES


@dataclass
class StubRun:
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    path: Path
    config: Any = field(
        default_factory=lambda: SimpleNamespace(phases=[SimpleNamespace(lr=0.1, batch_size=8)])
    )
    summary: dict[str, Any] = field(default_factory=lambda: {"steps": 30})

    def objective(self, split: str = "train", chunk_size: int | None = None, **_: Any) -> Objective:
        return Objective(self.model, "cross_entropy", self.x, self.y, chunk_size=chunk_size)

    def checkpoints(self) -> list[Path]:
        return sorted((self.path / "checkpoints").glob("step-*.safetensors"), key=lambda p: int(p.stem[5:]))


def _runs(tmp_path: Path, count: int) -> dict[str, StubRun]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    runs = {}
    for i in range(count):
        torch.manual_seed(10 + i)
        model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        path = tmp_path / f"run{i}"
        (path / "checkpoints").mkdir(parents=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.2)
        for step in range(30):
            if step % 10 == 0:
                save_file(
                    {k: v.clone() for k, v in model.state_dict().items()},
                    path / f"checkpoints/step-{step}.safetensors",
                )
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        runs[str(path)] = StubRun(model.eval(), x, y, path)
    return runs


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    runs = _runs(tmp_path, 3)
    monkeypatch.setattr(landscape_cli, "_load_run", lambda p: runs[str(p)])
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """root"""

    landscape_cli.register(app)
    runner = CliRunner()
    return (lambda *args: runner.invoke(app, ["landscape", *args], catch_exceptions=False)), list(runs)


def test_slice_simplex_mds_commands(cli, tmp_path: Path) -> None:
    invoke, runs = cli
    out = tmp_path / "out"
    r = invoke("slice", "--run", runs[0], "--out", str(out / "s"), "--points", "5")
    assert r.exit_code == 0, r.output
    s = json.loads((out / "s/slice.json").read_text())
    assert (
        np.array(s["loss"]).shape == (5, 5)
        and (out / "s/slice.png").exists()
        and (out / "s/slice.npz").exists()
    )
    assert (
        invoke("slice", "--run", runs[0], "--out", str(out / "s"), "--points", "5").exit_code == 0
    )  # resumes
    r = invoke("slice", "--run", runs[0], "--out", str(out / "p"), "--points", "4", "--directions", "pca")
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "p/slice.json").read_text())["path"]) == 4  # 3 checkpoints + final
    r = invoke("slice", "--run", runs[0], "--run", runs[1], "--out", str(out / "i"), "--points", "6")
    assert r.exit_code == 0, r.output
    inter = json.loads((out / "i/slice.json").read_text())
    assert inter["kind"] == "interpolation" and len(inter["loss"]) == 6
    r = invoke("simplex", "--run", runs[0], "--run", runs[1], "--run", runs[2], "--out", str(out / "t"),
               "--resolution", "3")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert len(json.loads((out / "t/simplex.json").read_text())["loss"]) == 10
    r = invoke("mds", "--run", runs[0], "--run", runs[1], "--out", str(out / "m"), "--params", "2.*")
    assert r.exit_code == 0, r.output
    m = json.loads((out / "m/mds.json").read_text())
    assert len(m["coords"]) == len(m["errors"]) == 8 and (out / "m/mds.png").exists()


def test_measure_probes(tmp_path: Path) -> None:
    run = next(iter(_runs(tmp_path, 1).values()))
    flat = PROBES["flatness"](run, {"directions": 4, "eps": 0.05, "seed": 1})
    assert len(flat["samples"]) == 4 and flat["value"] > 0
    noise = PROBES["noise"](run, {"examples": 30, "batch_sizes": (1, 10), "samples": 200, "components": 2})
    assert noise["diffusion"]["rank"] <= 29 and noise["temperature"]["with_replacement"] == pytest.approx(
        0.1 / 16
    )
    assert len(noise["gradient_components"]) == 4
    marg = PROBES["margins"](run, {"gammas": [0.0, 0.5]})
    assert marg["path_norm"] > 0 and set(marg["fan_in_l1"]) == {"0", "2"}
    assert marg["perturbation"]["errors"][0] == pytest.approx(1 - marg["margins"]["fraction_positive"])
