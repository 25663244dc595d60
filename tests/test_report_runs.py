"""Training runs explain themselves: ``plot_run`` (metrics over steps, sharpness with its 2/lr line), the
report of run directories (``flatminima report RUN_DIR``) and probes measured in one's own loop."""

from __future__ import annotations

import base64
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from torch import nn

import flatminima as fm
from flatminima.cli import main
from flatminima.errors import DataNotFoundError, UnknownNameError
from flatminima.report import RunMetrics, find_runs, run_metrics, write_report
from flatminima.training import probe, read_metrics


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    labels = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return x, nn.functional.one_hot(labels, 3).float(), labels


def _train(out: Path | None, lr: float) -> fm.TrainResult:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y, labels = _data()
    phases = [{"optimizer": "gd", "lr": lr, "max_steps": 6}, {"optimizer": "sgd", "lr": lr, "batch_size": 8,
              "max_steps": 4}]  # fmt: skip
    return fm.train(model, (x, y, labels), phases=phases, loss="mse", seed=0, log_every=2,
                    probes=[fm.SharpnessProbe(every=5)], out=out)  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    for lr in (0.5, 0.25):
        _train(root / f"gd-lr{lr}", lr)
    return root


def test_plot_run_sharpness_with_its_stability_line(runs: Path, tmp_path: Path) -> None:
    run = runs / "gd-lr0.5"
    fig = fm.plot_run(run, "sharpness", path=tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 5_000
    ax = fig.axes[0]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    rows = [(s, v) for s, _, n, v in read_metrics(run) if n == "sharpness"]
    steps, values = lines["sharpness"].get_data()
    assert list(steps) == sorted({s for s, _ in rows})
    assert np.allclose(values, [dict(rows)[s] for s in steps])
    assert np.allclose(lines["2 / lr"].get_ydata(), 4.0)  # lr 0.5 in both phases
    assert ax.get_ylabel() == "sharpness" and ax.get_xlabel() == "step"
    assert ax.get_yscale() == "linear"
    assert "gd-lr0.5" in ax.get_title() and "finished after 10 steps" in ax.get_title()
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["gd lr 0.5", "sgd lr 0.5 B 8"]  # phases labelled, the change at step 6 marked
    assert any(list(ln.get_xdata()) == [6, 6] for ln in ax.get_lines())


def test_plot_run_panels_from_a_train_result_without_run_directory() -> None:
    result = _train(None, 0.5)
    fig = fm.plot_run(result)  # defaults: loss, accuracy, sharpness (bookkeeping metrics left out)
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels == ["loss", "accuracy", "sharpness"]
    loss_lines = [ln.get_label() for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
    assert loss_lines == ["training loss"]  # a tuple dataset has no test split
    _, loss = result.series("train_loss")
    assert np.allclose(fig.axes[0].get_lines()[0].get_ydata(), loss)
    with pytest.raises(UnknownNameError, match="sharpness_residual"):
        fm.plot_run(result, "sharpnes")


def test_log_axis_where_values_span_decades() -> None:
    steps = np.arange(0, 50, 5)
    series = {
        "train_loss": (steps, 10.0 ** (-steps / 10)),
        "sharpness": (steps, 2.0 + 0.1 * steps),
        "lr": (steps, np.full(len(steps), 0.1)),
    }
    run = RunMetrics("toy", series, summary={"status": "finished", "steps": 45})
    fig = fm.plot_run(run, "loss", "sharpness")
    FigureCanvasAgg(fig).draw()
    assert [ax.get_yscale() for ax in fig.axes] == ["log", "linear"]
    assert fm.plot_run(run, "loss", log=False).axes[0].get_yscale() == "linear"
    assert np.allclose(fig.axes[1].get_lines()[1].get_ydata(), 20.0)  # 2 / 0.1


def test_report_of_one_run(runs: Path) -> None:
    run = runs / "gd-lr0.25"
    html = write_report(run)
    assert html == run / "report.html"
    text = html.read_text()
    assert "final metrics" in text and "optimizer: gd" in text and "data:image/png;base64," in text
    png = base64.b64decode(text.split("data:image/png;base64,", 1)[1].split("'", 1)[0])
    assert png.startswith(b"\x89PNG")
    md = (run / "summary.md").read_text()
    final = run_metrics(run).summary["final"]
    assert f"| train_loss | {final['train_loss']:.4g} |" in md
    assert "status finished after 10 steps" in md
    figure = run / "report-figures" / "gd-lr0.25-metrics.png"
    assert figure.is_file() and "(report-figures/gd-lr0.25-metrics.png)" in md


def test_report_of_a_folder_of_runs_and_the_cli(runs: Path, capsys: pytest.CaptureFixture) -> None:
    assert [p.name for p in find_runs(runs)] == ["gd-lr0.25", "gd-lr0.5"]
    main(["report", str(runs)])
    assert capsys.readouterr().out.strip() == str(runs / "report.html")
    md = (runs / "summary.md").read_text()
    assert md.startswith("# flatminima report: 2 training runs")
    assert "| gd-lr0.25 | finished | 10 |" in md and "| gd-lr0.5 | finished | 10 |" in md
    overlay = runs / "report-figures" / "all-runs.png"
    assert overlay.is_file() and "(report-figures/all-runs.png)" in md


def test_report_without_results_or_runs_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DataNotFoundError, match="flatminima train"):
        write_report(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path)])
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: no result.json and no training run")


def test_probes_measure_in_ones_own_loop() -> None:
    """SharpnessProbe.measure equals the sharpness of the same Objective (an independent call), and a
    @probe function gets the context the trainer would build."""
    x, y, _ = _data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    model.train()
    sharp = fm.SharpnessProbe(tol=1e-6)
    got = sharp.measure(model, x, y, loss="mse", lr=0.1, step=3)
    ref = fm.sharpness(fm.Objective(model, "mse", x, y), tol=1e-6)
    assert got["sharpness"] == pytest.approx(ref.value, rel=1e-5)
    assert model.training  # restored

    seen = {}

    @probe(every=10)
    def weight_norm(ctx: fm.ProbeContext) -> dict[str, float]:
        seen.update(step=ctx.step, lr=ctx.lr, batch=ctx.batch_size, training=ctx.model.training)
        return {"wnorm": torch.cat([p.flatten() for p in ctx.model.parameters()]).norm()}

    out = weight_norm.measure(model, x, y, lr=0.5, step=7)
    expected = float(torch.cat([p.detach().flatten() for p in model.parameters()]).norm())
    assert out == {"wnorm": pytest.approx(expected)}
    assert seen == {"step": 7, "lr": 0.5, "batch": 40, "training": False}
    weight_norm.measure(model, x, y)
    assert math.isnan(seen["lr"]) and seen["step"] == 0  # no lr given: NaN, not a made-up value
