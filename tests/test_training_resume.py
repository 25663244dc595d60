"""Resumable runs: stop / SIGKILL mid-run, train again, same numbers bit for bit; ownership of run dirs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from flatminima.curvature import SharpnessProbe
from flatminima.errors import CheckpointError, ConfigError
from flatminima.training import ProbeContext, load_checkpoint, probe, read_metrics, save_checkpoint, train

ROOT = Path(__file__).resolve().parents[1]


def _problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randn(40, 3, generator=g, dtype=torch.float64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 3))
    return model.double(), x, y


PHASES = [
    {"optimizer": "sgd", "lr": 0.05, "batch_size": 7, "momentum": 0.9, "max_steps": 23},
    {"optimizer": "sgd", "lr": 0.02, "batch_size": 5, "sampling": "with_replacement", "max_steps": 17},
]


STEPS_SEEN: list[int] = []  # steps the last _run call trained through (its probe saw them)


def _run(out: Path | None, interrupt_at: int | None = None, slow: bool = False, **kwargs):
    """The same run every time (MLP with BatchNorm and dropout, two SGD phases, a SharpnessProbe whose
    warm start is state); ``interrupt_at`` raises Ctrl-C at that step, ``slow`` sleeps 50 ms per step."""
    model, x, y = _problem()
    STEPS_SEEN.clear()

    @probe(every=1)
    def hook(ctx: ProbeContext) -> dict[str, float]:
        STEPS_SEEN.append(ctx.step)
        if ctx.step == interrupt_at:
            raise KeyboardInterrupt
        if slow:
            time.sleep(0.05)
        return {}

    probes = [SharpnessProbe(every=6, loss="mse"), hook]
    result = train(model, (x, y), PHASES, out=out, log_every=4, probes=probes, seed=3, **kwargs)
    return model, result


def _same_state(a: nn.Module, b: nn.Module) -> None:
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2), k


def test_stopped_run_resumes_to_exactly_the_uninterrupted_numbers(tmp_path: Path) -> None:
    reference_model, reference = _run(tmp_path / "reference", resume_every=5)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(out, interrupt_at=29, resume_every=5)  # in phase 2, after the resume point at step 25
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "stopped" and (out / "resume" / "resume.json").is_file()
    assert json.loads((out / "resume" / "resume.json").read_text())["step"] == 25
    model, result = _run(out, resume_every=5)
    assert min(STEPS_SEEN) == 26  # continued after the resume point (25), not from step 0
    assert result.status == "finished" and result.steps == reference.steps == 40
    _same_state(model, reference_model)
    assert read_metrics(out) == read_metrics(tmp_path / "reference")  # no lost or duplicated row
    assert result.history == reference.history and result.final == reference.final
    assert not (out / "resume").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "reference",
        "run",
    ]


KILL_SCRIPT = """
import sys, time, torch
from torch import nn
torch.set_num_threads({threads})  # as this process: bit for bit holds at one thread count
sys.path.insert(0, {tests!r})
from test_training_resume import _run
_run(__import__("pathlib").Path(sys.argv[1]), resume_every=5, slow=True)
"""


def test_sigkill_mid_run_then_train_again_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    script = textwrap.dedent(KILL_SCRIPT.format(tests=str(ROOT / "tests"), threads=torch.get_num_threads()))
    proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env, start_new_session=True)
    pointer = tmp_path / ".killed.partial" / "resume" / "resume.json"
    try:
        deadline = time.monotonic() + 90
        while not (pointer.is_file() and json.loads(pointer.read_text())["step"] >= 10):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no resume point within 90 s"
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists() and (tmp_path / ".killed.partial").is_dir()
    model, result = _run(out, resume_every=5, slow=True)
    assert min(STEPS_SEEN) >= 11
    reference_model, reference = _run(tmp_path / "reference", resume_every=5, slow=True)
    _same_state(model, reference_model)
    assert read_metrics(out) == read_metrics(tmp_path / "reference")
    assert result.history == reference.history
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "reference"]


def test_a_second_train_into_the_same_output_is_refused_while_the_first_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    seen: list[str] = []

    @probe(every=3)
    def second(ctx: ProbeContext) -> dict[str, float]:
        if ctx.step == 3:
            model, x, y = _problem()
            with pytest.raises(ConfigError, match="another flatminima train is writing"):
                train(model, (x, y), PHASES, out=out, log_every=4, seed=3)
            seen.append("refused")
        return {}

    model, x, y = _problem()
    train(model, (x, y), PHASES, out=out, log_every=4, probes=[second], seed=3)
    assert seen == ["refused"] and json.loads((out / "summary.json").read_text())["status"] == "finished"


def test_interrupting_an_overwrite_keeps_the_finished_run_and_the_next_call_resumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model, x, y = _problem()
    train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 3}], out=out)
    before = (out / "checkpoints" / "final.safetensors").read_bytes()
    with pytest.raises(KeyboardInterrupt):
        _run(out, interrupt_at=12, resume_every=5, overwrite=True)
    assert (out / "checkpoints" / "final.safetensors").read_bytes() == before  # untouched
    assert json.loads((out / "summary.json").read_text())["steps"] == 3
    assert (tmp_path / ".run.partial" / "resume").is_dir()
    model, result = _run(out, resume_every=5, overwrite=True)
    assert min(STEPS_SEEN) == 11
    reference_model, _ = _run(tmp_path / "reference", resume_every=5)
    _same_state(model, reference_model)
    assert result.steps == 40 and sorted(p.name for p in tmp_path.iterdir()) == ["reference", "run"]


def test_a_partial_run_of_another_configuration_is_refused_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(out, interrupt_at=12, resume_every=5)
    model, x, y = _problem()
    other = [{"optimizer": "gd", "lr": 0.1, "max_steps": 3}]
    with pytest.raises(ConfigError, match="stopped run of a different configuration"):
        train(model, (x, y), other, out=out)
    assert json.loads((out / "summary.json").read_text())["status"] == "stopped"
    result = train(model, (x, y), other, out=out, overwrite=True)
    assert result.steps == 3 and not (out / "resume").exists()


def test_reuse_finished_loads_the_run_instead_of_training_again(tmp_path: Path) -> None:
    out = tmp_path / "run"
    model, first = _run(out)
    model2, again = _run(out, reuse_finished=True)
    assert STEPS_SEEN == []  # nothing trained
    _same_state(model, model2)
    assert again.history == first.history and again.final == first.final and again.steps == first.steps


def test_checkpoint_checksums_catch_flipped_bits_and_kinds_must_match(tmp_path: Path) -> None:
    model = nn.Linear(64, 64)
    path = save_checkpoint(model, tmp_path / "ck.safetensors")
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x40  # a bit inside the tensor data, the header intact
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="does not match its checksum"):
        load_checkpoint(nn.Linear(64, 64), path)
    ints = save_checkpoint(
        {"weight": torch.ones(2, 2, dtype=torch.int64), "bias": torch.ones(2)}, tmp_path / "i"
    )
    with pytest.raises(CheckpointError, match=r"weight is torch.int64, the model expects torch.float32"):
        load_checkpoint(nn.Linear(2, 2), ints)


@pytest.mark.parametrize("seed", [-1, 2**70, 1.5, True])
def test_train_refuses_a_bad_seed(seed: object) -> None:
    model, x, y = _problem()
    with pytest.raises(ConfigError, match="seed must be an integer"):
        train(model, (x, y), [{"optimizer": "gd", "lr": 0.1, "max_steps": 1}], seed=seed)  # type: ignore[arg-type]


def test_resuming_with_another_thread_count_warns(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _run(out, interrupt_at=8, resume_every=5)
    pointer = out / "resume" / "resume.json"
    info = json.loads(pointer.read_text())
    assert info["threads"] == torch.get_num_threads()
    pointer.write_text(json.dumps({**info, "threads": info["threads"] + 1}))
    with pytest.warns(RuntimeWarning, match="not bit for bit"):
        _run(out, resume_every=5)
