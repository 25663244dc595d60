"""Trainer: update rules against hand-written references, stopping rules, divergence, run directories."""

from __future__ import annotations

import json
import math
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from flatminima.errors import CheckpointError, ConfigError
from flatminima.training import (
    Phase,
    ProbeContext,
    load_checkpoint,
    load_run,
    probe,
    read_metrics,
    save_checkpoint,
    train,
)
from flatminima.training import trainer as trainer_module
from flatminima.training.batches import BatchStream


def _linear_problem(n: int = 12, d: int = 3, k: int = 2, realizable: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = torch.randn(k, d, generator=g, dtype=torch.float64)
    y = x @ w_true.T + (0 if realizable else 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64))
    model = nn.Linear(d, k, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(k, d, generator=g, dtype=torch.float64))
    return model, x, y


def _np_grad(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Gradient of nn.MSELoss()(x w^T, y) = (1/(m K)) ||x w^T - y||^2 with respect to w."""
    m, k = y.shape
    return 2.0 / (m * k) * (x @ w.T - y).T @ x


def _files_next_to(path):
    return sorted(p.name for p in path.parent.iterdir())


# ---------------------------------------------------------------------------------------------- update rules
def test_gd_matches_hand_written_gradient_descent():
    model, x, y = _linear_problem()
    w = model.weight.detach().numpy().copy()
    lr, steps = 0.2, 25
    result = train(model, (x, y), [{"optimizer": "gd", "lr": lr, "max_steps": steps}], log_every=5)
    xn, yn = x.numpy(), y.numpy()
    losses = {0: float(np.mean((xn @ w.T - yn) ** 2))}
    for t in range(1, steps + 1):
        w = w - lr * _np_grad(w, xn, yn)
        losses[t] = float(np.mean((xn @ w.T - yn) ** 2))
    assert result.status == "finished" and result.steps == steps
    np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-12, atol=1e-14)
    logged_steps, logged = result.series("train_loss")
    assert logged_steps == [0, 5, 10, 15, 20, 25]
    np.testing.assert_allclose(logged, [losses[t] for t in logged_steps], rtol=1e-12)


@pytest.mark.parametrize("sampling", ["without_replacement", "with_replacement"])
def test_sgd_matches_hand_written_sgd_on_the_same_batches(sampling):
    model, x, y = _linear_problem(n=10)
    w = model.weight.detach().numpy().copy()
    lr, batch, steps, seed = 0.1, 3, 14, 7
    phase = {"optimizer": "sgd", "lr": lr, "batch_size": batch, "sampling": sampling, "max_steps": steps}
    train(model, (x, y), [phase], seed=seed)
    stream = BatchStream(10, batch, sampling, torch.Generator().manual_seed(seed))
    xn, yn = x.numpy(), y.numpy()
    for _ in range(steps):
        idx = stream.next().numpy()
        w = w - lr * _np_grad(w, xn[idx], yn[idx])
    np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-12, atol=1e-14)


def test_momentum_buffer_is_kept_across_phases_of_the_same_optimizer():
    """Heavy ball v <- mu v + g, w <- w - lr v; phase 2 changes lr only and keeps v."""
    model, x, y = _linear_problem()
    w = model.weight.detach().numpy().copy()
    phases = [
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "max_steps": 6},
        {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "max_steps": 5},
    ]
    train(model, (x, y), phases)
    xn, yn = x.numpy(), y.numpy()
    v = None
    for lr, steps in ((0.05, 6), (0.01, 5)):
        for _ in range(steps):
            g = _np_grad(w, xn, yn)
            v = g if v is None else 0.9 * v + g
            w = w - lr * v
    np.testing.assert_allclose(model.weight.detach().numpy(), w, rtol=1e-11, atol=1e-13)


def test_lbfgs_reaches_the_least_squares_solution():
    model, x, y = _linear_problem(n=20)
    options = {
        "max_iter": 50,
        "line_search_fn": "strong_wolfe",
        "tolerance_grad": 1e-12,
        "tolerance_change": 0.0,
    }
    result = train(model, (x, y), [{"optimizer": "lbfgs", "lr": 1.0, "max_steps": 3, "options": options}])
    w_ls = torch.linalg.lstsq(x, y).solution.T
    assert result.status == "finished"
    assert torch.allclose(model.weight.detach(), w_ls, atol=1e-8)


class _RecordingClosureOptimizer(torch.optim.SGD):
    """Calls the closure twice per step (as Entropy-SGD's inner loop does) and records the batches seen."""

    needs_closure = True

    def __init__(self, params, lr, seen):
        super().__init__(params, lr=lr)
        self.seen = seen

    def step(self, closure=None):
        first = closure()
        closure()
        super().step()
        return first


def test_closure_optimizers_draw_a_fresh_minibatch_on_every_call(monkeypatch):
    seen: list[torch.Tensor] = []
    model = nn.Linear(1, 1, bias=False).double()
    forward = model.forward

    def recording_forward(inp):
        seen.append(inp.detach().reshape(-1).clone())
        return forward(inp)

    model.forward = recording_forward
    monkeypatch.setattr(
        trainer_module,
        "make_optimizer",
        lambda phase, params: _RecordingClosureOptimizer(params, phase.lr, seen),
    )
    x = torch.arange(8, dtype=torch.float64).reshape(8, 1)
    phase = {"optimizer": "sgd", "lr": 1e-3, "batch_size": 2, "max_epochs": 2}
    result = train(model, (x, x.clone()), [phase], log_every=1000, eval_test=False)
    batches = [s for s in seen if len(s) == 2]  # the training minibatches (evaluation sees all 8)
    # 2 epochs of 4 batches = 8 closure calls = 4 steps; every call a new batch; each epoch a permutation.
    assert result.steps == 4 and len(batches) == 8
    for epoch in (batches[:4], batches[4:]):
        assert sorted(torch.cat(epoch).tolist()) == list(range(8))


# ---------------------------------------------------------------------------------------------- sampling
def test_batch_stream_epochs_are_permutations_and_with_replacement_is_uniform():
    stream = BatchStream(10, 3, "without_replacement", torch.Generator().manual_seed(0))
    for _ in range(4):  # 3 batches of 3 per epoch; one example left out, a different one each epoch
        epoch = torch.cat([stream.next() for _ in range(3)])
        assert len(set(epoch.tolist())) == 9
    assert stream.epochs == pytest.approx(3.6)
    stream = BatchStream(5, 4, "with_replacement", torch.Generator().manual_seed(0))
    counts = torch.bincount(torch.cat([stream.next() for _ in range(5000)]), minlength=5).double()
    expected = 4000.0
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 25.0  # chi-square with 4 dof: P(> 25) < 1e-4
    assert BatchStream(7, None, "without_replacement", torch.Generator()).next() is None


# ---------------------------------------------------------------------------------------------- stopping
def test_stop_loss_max_epochs_and_global_step_count():
    model, x, y = _linear_problem(n=20, realizable=True)
    phases = [
        {"optimizer": "gd", "lr": 0.3, "max_steps": 5000, "stop_loss": 1e-6},
        {"optimizer": "sgd", "lr": 0.01, "batch_size": 5, "max_epochs": 3},
    ]
    result = train(model, (x, y), phases, log_every=1)
    first, second = result.phases
    assert first["ended_by"] == "stop_loss" and second["ended_by"] == "max_epochs"
    assert second["steps"] == 12 and result.steps == first["steps"] + 12
    gd_rows = [r for r in result.history if r["phase"] == 0]
    assert gd_rows[-1]["train_loss"] < 1e-6 <= gd_rows[-2]["train_loss"]
    assert result.history[-1]["step"] == result.steps and result.history[-1]["epoch"] == pytest.approx(
        first["steps"] + 3
    )


def test_stop_loss_already_met_at_phase_start_takes_no_step():
    model, x, y = _linear_problem(realizable=True)
    with torch.no_grad():
        model.weight.copy_(torch.linalg.lstsq(x, y).solution.T)
    result = train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 10, "stop_loss": 1e-8}])
    assert result.steps == 0 and result.phases[0]["ended_by"] == "stop_loss"


# ---------------------------------------------------------------------------------------------- divergence
def test_divergence_is_a_status_not_an_exception(tmp_path):
    """GD on a quadratic with lr far above 2/a grows geometrically (factor |1 - lr a|) until it is flagged."""
    model, x, y = _linear_problem()
    a = float(torch.linalg.eigvalsh(2 * x.T @ x / (len(x) * y.shape[1])).max())  # sharpness of the MSE
    result = train(model, (x, y), [{"optimizer": "gd", "lr": 10 / a, "max_steps": 500}], out=tmp_path / "run")
    assert result.status == "diverged" and 0 < result.steps < 500
    assert len(result.history) >= 2 and result.history[0]["step"] == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["steps"] == result.steps
    initial = result.history[0]["train_loss"]
    last = result.history[-1]["train_loss"]
    assert not math.isfinite(last) or last > 1e6 * max(initial, 1.0)


def test_nan_loss_is_diverged():
    model, x, y = _linear_problem()
    y[3, 0] = float("nan")
    result = train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 10}])
    assert result.status == "diverged" and result.steps == 0


# ---------------------------------------------------------------------------------------------- reproducible
def _mlp_run(seed: int, out=None):
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    data = SimpleNamespace(
        train=SimpleNamespace(x=x[:30], y=labels[:30], labels=labels[:30]),
        test=SimpleNamespace(x=x[30:], y=labels[30:], labels=labels[30:]),
    )
    phases = [{"optimizer": "sgd", "lr": 0.1, "batch_size": 4, "max_steps": 30, "momentum": 0.5}]
    return train(model, data, phases, loss="cross_entropy", seed=seed, log_every=7, out=out)


def test_same_seed_same_numbers_and_other_seed_other_numbers():
    a, b, c = _mlp_run(3), _mlp_run(3), _mlp_run(4)
    assert a.history == b.history
    assert a.history != c.history


def test_accuracy_and_test_metrics_match_a_direct_computation():
    result = _mlp_run(0)
    model = result.model
    g = torch.Generator().manual_seed(5)
    x = torch.randn(40, 4, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    with torch.no_grad():
        out = model(x)
    assert result.final["train_acc"] == pytest.approx(
        float((out[:30].argmax(1) == labels[:30]).double().mean())
    )
    assert result.final["test_acc"] == pytest.approx(
        float((out[30:].argmax(1) == labels[30:]).double().mean())
    )
    ce = float(nn.functional.cross_entropy(out[30:], labels[30:]))
    assert result.final["test_loss"] == pytest.approx(ce, rel=1e-5)


# ---------------------------------------------------------------------------------------------- run directory
def test_run_directory_layout_metrics_and_checkpoints(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    out = tmp_path / "run"
    phases = [{"optimizer": "sgd", "lr": 0.05, "batch_size": 8, "max_steps": 6}]
    result = train(model, (x, y), phases, out=out, log_every=2, checkpoint_every=3)
    assert result.out_dir == out
    assert _files_next_to(out) == ["run"]  # no temporary directory left behind
    assert sorted(p.name for p in out.iterdir()) == [
        ".flatminima-run",
        "checkpoints",
        "config.yaml",
        "metrics.sqlite",
        "summary.json",
    ]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [
        "final.optim.pt",
        "final.safetensors",
        "step-0.safetensors",
        "step-3.safetensors",
        "step-6.safetensors",
    ]
    rows = read_metrics(out)
    with sqlite3.connect(out / "metrics.sqlite") as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(metrics)")]
    assert columns == ["step", "phase", "name", "value"]
    from_db = {(s, n): v for s, _, n, v in rows}
    for row in result.history:
        for name, value in row.items():
            if name not in ("step", "phase"):
                assert from_db[(row["step"], name)] == pytest.approx(value, rel=1e-12)
    # Final weights and buffers (BatchNorm running statistics) round-trip exactly.
    fresh = nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)).double()
    load_checkpoint(fresh, out / "checkpoints" / "final.safetensors")
    for (k, v), (k2, v2) in zip(model.state_dict().items(), fresh.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    assert not torch.equal(fresh[1].running_mean, torch.zeros(5))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 6
    assert summary["final"]["train_loss"] == pytest.approx(result.final["train_loss"])


def test_rerun_replaces_a_run_directory_only_with_overwrite_and_never_another_directory(tmp_path):
    model, x, y = _linear_problem()
    phase = [{"optimizer": "gd", "lr": 0.1, "max_steps": 2}]
    out = tmp_path / "run"
    train(model, (x, y), phase, out=out)
    two = [{"optimizer": "gd", "lr": 0.1, "max_steps": 3}, {"optimizer": "sgd", "lr": 0.1, "max_steps": 1}]
    with pytest.raises(ConfigError, match="finished flatminima run; pass --overwrite"):
        train(model, (x, y), two, out=out)
    assert json.loads((out / "summary.json").read_text())["steps"] == 2
    train(model, (x, y), two, out=out, overwrite=True)
    assert json.loads((out / "summary.json").read_text())["steps"] == 4
    # the end of the first phase is kept (the minimum before an escape phase)
    kept = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert kept == ["final.optim.pt", "final.safetensors", "step-3.safetensors"]
    assert _files_next_to(out) == ["run"]
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    (other / "config.yaml").write_text("a user's own config")
    for overwrite in (False, True):
        with pytest.raises(ConfigError, match="not a flatminima run directory"):
            train(model, (x, y), phase, out=other, overwrite=overwrite)
    assert sorted(p.name for p in other.iterdir()) == ["config.yaml", "notes.txt"]
    # a run the user added files to is not replaced either
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="other files added"):
        train(model, (x, y), phase, out=out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and _files_next_to(out) == ["precious", "run"]


def test_bad_input_is_rejected_before_anything_is_written(tmp_path):
    model, x, y = _linear_problem(n=12)
    out = tmp_path / "run"
    cases = [
        ([{"optimizer": "sgd", "lr": 0.1, "batch_size": 13, "max_steps": 1}], "exceeds the 12 training"),
        ([{"optimizer": "sgd", "lr": -0.1, "max_steps": 1}], r"phases\.0\.lr: must be > 0"),
        ([{"optimizer": "nope", "lr": 0.1, "max_steps": 1}], "unknown optimizer 'nope'"),
        ([{"optimizer": "gd", "lr": 0.1}], "max_steps or max_epochs"),
        ([{"optimizer": "sgd", "lr": 0.1, "max_steps": 1, "options": {"bogus": 1}}], "optimizer sgd"),
    ]
    for phases, message in cases:
        with pytest.raises(ConfigError, match=message):
            train(model, (x, y), phases, out=out)
        assert not out.exists() and list(tmp_path.iterdir()) == []


def test_failure_during_training_leaves_no_run_directory(tmp_path):
    @probe(every=3)
    def broken(ctx: ProbeContext) -> dict[str, float]:
        if ctx.step == 6:
            raise RuntimeError("probe bug")
        return {"ok": 1.0}

    model, x, y = _linear_problem()
    with pytest.raises(RuntimeError, match="probe bug"):
        train(
            model,
            (x, y),
            [{"optimizer": "gd", "lr": 0.1, "max_steps": 10}],
            out=tmp_path / "run",
            probes=[broken],
        )
    assert list(tmp_path.iterdir()) == []


def test_interrupt_writes_a_stopped_run_and_reraises(tmp_path):
    @probe(every=4)
    def interrupt(ctx: ProbeContext) -> dict[str, float]:
        if ctx.step == 4:
            raise KeyboardInterrupt
        return {}

    model, x, y = _linear_problem()
    with pytest.raises(KeyboardInterrupt):
        train(
            model,
            (x, y),
            [{"optimizer": "gd", "lr": 0.1, "max_steps": 10}],
            out=tmp_path / "r",
            probes=[interrupt],
        )
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["steps"] == 4


# ---------------------------------------------------------------------------------------------- probes
def test_probes_run_on_schedule_and_at_phase_ends_with_the_right_context():
    calls: list[tuple[int, int, float, int]] = []

    @probe(every=4)
    def weight_norm(ctx: ProbeContext) -> dict[str, float]:
        calls.append((ctx.step, ctx.phase, ctx.lr, ctx.batch_size))
        assert not ctx.model.training and len(ctx.x) == 12 and ctx.loss == "mse"
        return {"weight_norm": float(ctx.model.weight.detach().norm())}

    model, x, y = _linear_problem()
    phases = [
        {"optimizer": "gd", "lr": 0.1, "max_steps": 6},
        {"optimizer": "sgd", "lr": 0.05, "batch_size": 3, "max_steps": 3},
    ]
    result = train(model, (x, y), phases, probes=[weight_norm], log_every=100)
    assert calls == [(0, 0, 0.1, 12), (4, 0, 0.1, 12), (6, 0, 0.1, 12), (8, 1, 0.05, 3), (9, 1, 0.05, 3)]
    steps, norms = result.series("weight_norm")
    assert steps == [0, 4, 6, 8, 9]
    assert norms[-1] == pytest.approx(float(model.weight.detach().norm()))


def test_probe_validation():
    model, x, y = _linear_problem()
    with pytest.raises(ConfigError, match="probe"):
        train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 1}], probes=[lambda ctx: {}])

    @probe(every=1)
    def clash(ctx):
        return {"train_loss": 0.0}

    with pytest.raises(ConfigError, match="clashes"):
        train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 1}], probes=[clash])


# ---------------------------------------------------------------------------------------------- checkpoints
def test_corrupt_or_mismatched_checkpoints_raise_checkpoint_error(tmp_path):
    model = nn.Linear(3, 2)
    path = save_checkpoint(model, tmp_path / "ck.safetensors")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(nn.Linear(4, 2), path)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(nn.Sequential(nn.Linear(3, 2)), path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(model, bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(model, tmp_path / "missing.safetensors")


def test_load_run_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_run(tmp_path / "missing")
    model, x, y = _linear_problem()
    train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 1}], out=tmp_path / "py")
    with pytest.raises(CheckpointError, match="load_checkpoint"):
        load_run(tmp_path / "py")


def test_phase_objects_and_sgdl_from_flatminima_optim():
    pytest.importorskip("flatminima.optim")
    model, x, y = _linear_problem()
    phases = [Phase(optimizer="gd", lr=0.1, max_steps=3), Phase(optimizer="SGDL", lr=0.05, max_steps=3)]
    result = train(model, (x, y), phases)
    assert result.status == "finished" and result.steps == 6 and math.isfinite(result.final["train_loss"])


def test_interrupt_without_run_directory_reraises_keyboard_interrupt():
    @probe(every=2)
    def interrupt(ctx: ProbeContext) -> dict[str, float]:
        if ctx.step == 2:
            raise KeyboardInterrupt
        return {}

    model, x, y = _linear_problem()
    with pytest.raises(KeyboardInterrupt):
        train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 10}], probes=[interrupt])


def test_sharpness_probe_logs_the_dense_top_eigenvalue(tiny_mlp, tiny_data):
    """The curvature package's probe through the trainer's ProbeContext, against a dense float64 Hessian."""
    curvature = pytest.importorskip("flatminima.curvature")
    from flatminima import Objective

    from .dense import dense_hessian

    x, y = tiny_data
    sharp = curvature.SharpnessProbe(every=5, tol=1e-10, max_iter=60)
    result = train(tiny_mlp, (x, y), [{"optimizer": "gd", "lr": 0.2, "max_steps": 10}], probes=[sharp])
    steps, values = result.series("sharpness")
    assert steps == [0, 5, 10]
    top = float(torch.linalg.eigvalsh(dense_hessian(Objective(tiny_mlp, "mse", x, y))).max())
    assert values[-1] == pytest.approx(top, rel=1e-6)
