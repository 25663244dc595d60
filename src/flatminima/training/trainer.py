"""The trainer: a run is a list of phases (GD, SGD, Adam, L-BFGS, SGDL, Entropy-SGD, ...) on one model.

``train(model, dataset, phases)`` minimizes the mean per-example loss I(theta) = (1/n) sum_i l_i(theta) (the
loss conventions of ``flatminima.objective``: ``"mse"`` is ``nn.MSELoss()``, as in Wu, Ma & E 2018) with the
update rule of each phase in turn; GD is full-batch SGD, theta <- theta - lr grad I(theta). Steps are counted
across phases.

Decisions where the papers are silent:

* Metrics (loss and accuracy on the full training and test sets, lr, epochs, probe outputs) are computed at
  step 0, every ``log_every`` steps, at the end of every phase and where the run diverges, with the model in
  eval mode (running batch-norm statistics, no dropout), i.e. exactly the function an ``Objective`` sees.
* ``stop_loss`` is checked on those full-training-set losses (also at the start of a phase).
* Divergence: a non-finite loss, or a loss above ``diverge_factor * max(I_0, 1)`` with I_0 the loss at step 0,
  either on a step's minibatch or at a log point, ends the run with status ``"diverged"`` (not an exception).
  The floor 1 keeps a run started at a minimum (I_0 ~ 0) from being called diverged for an escape burst.
* Consecutive phases with the same optimizer and options keep the optimizer (its momentum buffers, Entropy-SGD
  scoping counter, ...) and only change lr / momentum / weight_decay; a different optimizer starts fresh.
* Optimizers with ``needs_closure`` get a closure that draws a fresh minibatch at every call (the inner loop
  of Entropy-SGD, Chaudhari thesis Alg. 2); L-BFGS's closure uses the full batch. ``max_epochs`` counts
  examples drawn / n, i.e. *effective* epochs for the Entropy-SGD family (thesis Table 3.1).
* In a run of several phases the weights at the end of every phase but the last are kept as
  ``checkpoints/step-N.safetensors`` (N the global step), e.g. the GD minimum before SGD's escape (Wu, Ma & E
  2018, Table 3); ``checkpoint_every`` adds regular ones.
* Ctrl-C (and SIGTERM, which the CLI turns into the same) ends the run with status ``"stopped"``; the run
  directory is still written (with its last resume point), then the interrupt is raised again. Running the
  same command again continues the run (see :func:`train`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .._io import atomic_write_json
from .._progress import progress_bar, progress_enabled
from .._seed import seed_everything
from ..config import Phase, TrainConfig, dump_config, parse
from ..errors import ConfigError
from ..objective import LossFn, per_example_loss
from .batches import BatchStream
from .checkpoints import load_checkpoint, save_checkpoint, save_optimizer_state
from .optimizers import make_optimizer, needs_closure, same_kind, update_hyperparameters
from .probes import Probe, ProbeContext, check_probes, run_probes
from .resume import capture_rng, load_resume, restore_rng, save_resume
from .rundir import MARKER, MetricsDB, is_flatminima_run, read_metrics, read_summary, run_stage

__all__ = ["TrainResult", "evaluate", "train"]

EVAL_CHUNK = 4096  # examples per forward pass when evaluating on a whole split
RESUME_SECONDS = 60.0  # default spacing of resume points (wall-clock) when resume_every is not given


class _Split(NamedTuple):
    x: Tensor
    y: Tensor
    labels: Tensor | None


@dataclass
class TrainResult:
    """Outcome of :func:`train`.

    ``status``: ``"finished"`` | ``"diverged"`` | ``"stopped"``; ``steps``: optimizer steps taken;
    ``history``: one dict per logged step (``step``, ``phase`` and the metrics measured there); ``final``: the
    last value of every metric; ``phases``: per phase, its steps and why it ended; ``out_dir``: the run
    directory or None; ``model``: the trained model, left in eval mode.
    """

    status: str
    steps: int
    history: list[dict[str, float]]
    final: dict[str, float]
    seconds: float
    out_dir: Path | None
    model: nn.Module
    phases: list[dict[str, Any]] = field(default_factory=list)

    def series(self, name: str) -> tuple[list[int], list[float]]:
        """Steps and values of one metric, e.g. ``steps, loss = result.series("train_loss")``."""
        rows = [r for r in self.history if name in r]
        return [int(r["step"]) for r in rows], [r[name] for r in rows]


# ---------------------------------------------------------------------------------------------- data
def _split(obj: Any, model_dtype: torch.dtype, device: torch.device) -> _Split:
    if isinstance(obj, (tuple, list)) and len(obj) in (2, 3):
        x, y, *rest = obj
        labels = rest[0] if rest else None
    else:
        x, y, labels = obj.x, obj.y, getattr(obj, "labels", None)
    if labels is None and not y.is_floating_point() and y.dim() == 1:
        labels = y
    x = x.to(device, model_dtype if x.is_floating_point() else x.dtype)
    y = y.to(device, model_dtype if y.is_floating_point() else y.dtype)
    return _Split(x, y, None if labels is None else labels.to(device))


def _splits(dataset: Any, model: nn.Module) -> tuple[_Split, _Split | None]:
    """``dataset``: a ``flatminima.data.Dataset`` (``.train``, ``.test``) or a tuple ``(x, y[, labels])``."""
    first = next(model.parameters(), None)
    if first is None:
        raise ConfigError("the model has no parameters to train")
    if isinstance(dataset, (tuple, list)):
        train_split, test_split = _split(dataset, first.dtype, first.device), None
    elif hasattr(dataset, "train"):
        train_split = _split(dataset.train, first.dtype, first.device)
        test = getattr(dataset, "test", None)
        test_split = _split(test, first.dtype, first.device) if test is not None and len(test.x) else None
    else:
        raise ConfigError("dataset must be a flatminima.data.Dataset or a tuple (x, y[, labels])")
    if len(train_split.x) == 0 or len(train_split.x) != len(train_split.y):
        raise ConfigError(f"training data: {len(train_split.x)} inputs and {len(train_split.y)} targets")
    return train_split, test_split


def evaluate(model: nn.Module, loss_fn: LossFn, split: _Split) -> tuple[float, float]:
    """Mean loss and accuracy (nan without labels) on a whole split, model in eval mode, no gradients."""
    was_training = model.training
    model.eval()
    total, correct, n = 0.0, 0, len(split.x)
    try:
        with torch.no_grad():
            for start in range(0, n, EVAL_CHUNK):
                out = model(split.x[start : start + EVAL_CHUNK])
                total += float(loss_fn(out, split.y[start : start + EVAL_CHUNK]).sum())
                if split.labels is not None and out.dim() == 2 and out.shape[1] > 1:
                    correct += int((out.argmax(dim=1) == split.labels[start : start + EVAL_CHUNK]).sum())
    finally:
        model.train(was_training)
    acc = correct / n if split.labels is not None else math.nan
    return total / n, acc


# ---------------------------------------------------------------------------------------------- stepping
def _take(split: _Split, index: Tensor | None) -> tuple[Tensor, Tensor]:
    return (split.x, split.y) if index is None else (split.x[index], split.y[index])


def _step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    data: _Split,
    stream: BatchStream,
    closure_mode: bool,
) -> float:
    """One optimizer step; returns the minibatch loss at the parameters before the step."""
    if not closure_mode:
        x, y = _take(data, stream.next())
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y).mean()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    if getattr(optimizer, "closure_same_batch", False):  # SAM: both closure calls on one minibatch
        from ..optim.sam import BatchClosure

        return float(optimizer.step(BatchClosure(model, loss_fn, *_take(data, stream.next()))))

    first: list[float] = []

    def closure() -> Tensor:
        x, y = _take(data, stream.next())
        optimizer.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_fn(model(x), y).mean()
            loss.backward()
        if not first:
            first.append(float(loss.detach()))
        return loss

    returned = optimizer.step(closure)
    if first:
        return first[0]
    return float(returned) if returned is not None else math.nan


class _Log:
    """Metrics kept in memory and in the run's SQLite table."""

    def __init__(self, db: MetricsDB | None) -> None:
        self.db = db
        self.history: list[dict[str, float]] = []
        self.final: dict[str, float] = {}

    def replay(self, rows: Sequence[tuple[int, int, str, float]]) -> None:
        """Rebuild history and final values from stored rows (a resumed or reloaded run), writing nothing."""
        db, self.db = self.db, None
        for step, phase, name, value in rows:
            self.add(step, phase, {name: value})
        self.db = db

    def add(self, step: int, phase: int, values: Mapping[str, float]) -> None:
        if not values:
            return
        if self.history and self.history[-1]["step"] == step and self.history[-1]["phase"] == phase:
            self.history[-1].update(values)
        else:
            self.history.append({"step": step, "phase": phase, **values})
        self.final.update(values)
        if self.db is not None:
            self.db.add(step, phase, values)


def _resolve_phases(phases: Sequence[Phase | Mapping[str, Any]], n: int) -> list[Phase]:
    if isinstance(phases, (Phase, Mapping)):
        phases = [phases]
    if not phases:
        raise ConfigError("phases: give at least one phase")
    out = [parse(Phase, p, at=f"phases.{i}") for i, p in enumerate(phases)]
    for i, p in enumerate(out):
        if p.batch_size is not None and p.batch_size > n:
            raise ConfigError(f"phases.{i}.batch_size: {p.batch_size} exceeds the {n} training examples")
    return out


def _total_steps(phases: list[Phase], n: int) -> int | None:
    total = 0
    for p in phases:
        bound = [p.max_steps] if p.max_steps else []
        if p.max_epochs and p.optimizer in ("gd", "sgd", "adam"):
            bound.append(math.ceil(p.max_epochs * n / (p.batch_size or n)))
        if not bound:
            return None
        total += min(bound)
    return total


# ---------------------------------------------------------------------------------------------- train
def train(
    model: nn.Module,
    dataset: Any,
    phases: Sequence[Phase | Mapping[str, Any]] | Phase | Mapping[str, Any],
    loss: str | LossFn = "mse",
    seed: int = 0,
    out: str | Path | None = None,
    log_every: int = 10,
    eval_test: bool = True,
    probes: Sequence[Probe] = (),
    checkpoint_every: int | None = None,
    progress: bool | None = None,
    diverge_factor: float = 1e6,
    config: TrainConfig | None = None,
    resume_every: int | None = None,
    overwrite: bool = False,
    reuse_finished: bool = False,
) -> TrainResult:
    """Train ``model`` on ``dataset`` through ``phases``; write a run directory to ``out`` when given.

    ``dataset`` is a ``flatminima.data.Dataset`` or a tuple ``(x, y[, labels])``; ``phases`` a list of
    :class:`~flatminima.config.Phase` or dicts; ``loss`` ``"mse"``, ``"cross_entropy"`` or a callable
    returning per-example losses. ``config`` (passed by ``train_from_config``) is stored as the run's
    ``config.yaml``; runs trained from Python objects store their phases and settings only. Everything is
    validated before anything is written. Same ``seed`` -> the same numbers.

    Run directories (``out``; see ``training/rundir.py``): written under ``.NAME.partial`` and renamed at the
    end; an existing ``out`` is replaced only when it is a flatminima run and ``overwrite`` is True. Resume
    points (model, optimizer, every RNG, counters, probes' state) are saved every ``resume_every`` steps, or
    every ``RESUME_SECONDS`` of training when ``resume_every`` is None; calling ``train`` again with the same
    ``out`` and the same configuration after a crash, SIGKILL or Ctrl-C continues from the last one and ends
    with the same numbers as an uninterrupted run (bit for bit on CPU). ``reuse_finished``: when ``out``
    already holds a finished run of the same configuration, load it instead of training again (the sweeps'
    run functions use this to survive a crash between the end of training and the recording of results).
    """
    if not isinstance(log_every, int) or log_every < 1:
        raise ConfigError(f"log_every must be a positive integer, got {log_every!r}")
    for name, value in (("checkpoint_every", checkpoint_every), ("resume_every", resume_every)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ConfigError(f"{name} must be a positive integer or None, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    if not diverge_factor > 1 or not math.isfinite(diverge_factor):
        raise ConfigError(f"diverge_factor must be a finite number > 1, got {diverge_factor!r}")
    loss_fn = per_example_loss(loss)
    data, test = _splits(dataset, model)
    test = test if eval_test else None
    phase_list = _resolve_phases(phases, len(data.x))
    probe_list = check_probes(list(probes))
    trainable = [p for p in model.parameters() if p.requires_grad]
    for phase in phase_list:  # bad optimizer options fail here, before anything is written
        make_optimizer(phase, trainable)
    if config is not None:
        recorded: Any = config
    else:
        recorded = {
            "seed": seed,
            "data": None,
            "model": None,
            "loss": loss if isinstance(loss, str) else "custom",
            "phases": [p.model_dump(mode="json") for p in phase_list],
            "log_every": log_every,
            "checkpoint_every": checkpoint_every,
            "eval_test": eval_test,
            "diverge_factor": diverge_factor,
        }
    settings = _Settings(
        loss, loss_fn, seed, log_every, checkpoint_every, diverge_factor, progress, resume_every
    )
    if out is None:
        try:
            return _run(model, data, test, phase_list, probe_list, settings, None, None)
        except _Interrupted as exc:
            raise exc.interrupt from None
    text = dump_config(recorded)
    digest = hashlib.sha256(text.encode()).hexdigest()
    out = Path(out)
    if reuse_finished and _finished_run(out, digest):
        return _reload(model, out)
    with run_stage(out, digest, overwrite=overwrite) as stage:
        resume_state = load_resume(stage.path / "resume") if stage.resumed else None
        if resume_state is None:
            (stage.path / "config.yaml").write_text(text)
        try:
            result = _run(model, data, test, phase_list, probe_list, settings, stage.path, resume_state)
        except _Interrupted as exc:
            raise exc.interrupt from None
    result.out_dir = out
    return result


def _finished_run(out: Path, digest: str) -> bool:
    if not is_flatminima_run(out) or not (out / "summary.json").is_file():
        return False
    try:
        marker = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("status") == "finished" and marker.get("config_sha256") == digest


def _reload(model: nn.Module, out: Path) -> TrainResult:
    """A finished run read back: final weights into ``model``, metrics and summary from the files."""
    load_checkpoint(model, out / "checkpoints" / "final.safetensors")
    summary = read_summary(out)
    log = _Log(None)
    log.replay(read_metrics(out))
    model.eval()
    return TrainResult(
        str(summary.get("status", "finished")),
        int(summary.get("steps", 0)),
        log.history,
        dict(log.final),
        float(summary.get("seconds", 0.0)),
        out,
        model,
        list(summary.get("phases", [])),
    )


@dataclass
class _Settings:
    loss: str | LossFn
    loss_fn: LossFn
    seed: int
    log_every: int
    checkpoint_every: int | None
    diverge_factor: float
    progress: bool | None
    resume_every: int | None = None


class _Interrupted(Exception):
    def __init__(self, result: TrainResult, interrupt: KeyboardInterrupt) -> None:
        super().__init__("interrupted")
        self.result, self.interrupt = result, interrupt


@dataclass
class _ResumeAt:
    phase: int
    phase_steps: int
    optimizer: dict[str, Any]
    stream: dict[str, Any]


def _run(
    model: nn.Module,
    data: _Split,
    test: _Split | None,
    phases: list[Phase],
    probes: list[Probe],
    s: _Settings,
    stage: Path | None,
    resume_state: dict[str, Any] | None,
) -> TrainResult:
    start = time.perf_counter()
    generator = seed_everything(s.seed)
    n = len(data.x)
    db = MetricsDB(stage / "metrics.sqlite") if stage is not None else None
    log = _Log(db)
    params = [p for p in model.parameters() if p.requires_grad]
    model.train()
    state = {"step": 0, "phase": 0, "examples": 0, "lr": phases[0].lr, "batch": phases[0].batch_size or n}
    logged_at = {"metrics": -1}
    probed: tuple[int, set[int]] = (-1, set())  # (step, ids of the probes already run at that step)
    last_saved = {"time": time.perf_counter()}

    def measure(force_probes: bool = False) -> dict[str, float]:
        step, phase = state["step"], state["phase"]
        values: dict[str, float] = {"lr": state["lr"], "epoch": state["examples"] / n}
        values["train_loss"], values["train_acc"] = evaluate(model, s.loss_fn, data)
        if test is not None:
            values["test_loss"], values["test_acc"] = evaluate(model, s.loss_fn, test)
        values = {k: v for k, v in values.items() if not (k.endswith("_acc") and math.isnan(v))}
        log.add(step, phase, values)
        logged_at["metrics"] = step
        probe_due(force_probes)
        return values

    def probe_due(force: bool = False) -> None:
        nonlocal probed
        step = state["step"]
        if probed[0] != step:
            probed = (step, set())
        done = probed[1]
        due = [p for p in probes if id(p) not in done and (force or step % p.every == 0)]
        if not due:
            return
        ctx = ProbeContext(model, step, state["phase"], data.x, data.y, s.loss, state["lr"], state["batch"])
        values = run_probes(due, ctx, force=True)
        done.update(id(p) for p in due)
        log.add(step, state["phase"], values)

    def checkpoint_due(phase_end: bool = False) -> None:
        if stage is None:
            return
        if phase_end or (s.checkpoint_every and state["step"] % s.checkpoint_every == 0):
            save_checkpoint(model, stage / "checkpoints" / f"step-{state['step']}.safetensors")

    def resume_due(index: int, steps: int, optimizer: torch.optim.Optimizer, stream: BatchStream) -> None:
        if stage is None or db is None:
            return
        if s.resume_every is not None:
            if state["step"] % s.resume_every:
                return
        elif time.perf_counter() - last_saved["time"] < RESUME_SECONDS:
            return
        counters = {
            **state,
            "phase": index,
            "phase_steps": steps,
            "logged_at": logged_at["metrics"],
            "probed_step": probed[0],
            "probed": [i for i, p in enumerate(probes) if id(p) in probed[1]],
            "phase_info": phase_info,
            "initial": initial,
            "seconds": time.perf_counter() - start,
            "metrics_rowid": db.last_rowid(),
        }
        point = {
            "format": 1,
            "trainer": counters,
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "stream": stream.state_dict(),
            "rng": capture_rng(generator),
            "probes": [p.state_dict() if hasattr(p, "state_dict") else None for p in probes],
        }
        save_resume(stage / "resume", point)
        last_saved["time"] = time.perf_counter()

    status, phase_info = "finished", []
    resume_at: _ResumeAt | None = None
    if resume_state is not None and db is not None:
        counters = resume_state["trainer"]
        model.load_state_dict(resume_state["model"])
        restore_rng(resume_state["rng"], generator)
        log.replay(db.truncate(int(counters["metrics_rowid"])))
        for key in ("step", "examples", "lr", "batch"):
            state[key] = counters[key]
        logged_at["metrics"] = int(counters["logged_at"])
        probed = (int(counters["probed_step"]), {id(probes[i]) for i in counters["probed"]})
        for p, probe_state in zip(probes, resume_state["probes"], strict=True):
            if probe_state is not None:
                p.load_state_dict(probe_state)  # type: ignore[attr-defined]
        phase_info = list(counters["phase_info"])
        initial = float(counters["initial"])
        start -= float(counters["seconds"])
        resume_at = _ResumeAt(
            int(counters["phase"]),
            int(counters["phase_steps"]),
            resume_state["optimizer"],
            resume_state["stream"],
        )
    else:
        initial = measure()["train_loss"]
        checkpoint_due()
    threshold = s.diverge_factor * max(initial, 1.0)
    enabled = progress_enabled() if s.progress is None else s.progress

    def bad(value: float) -> bool:
        return not math.isfinite(value) or value > threshold

    optimizer: torch.optim.Optimizer | None = None
    try:
        if bad(initial):
            status = "diverged"
        with progress_bar(_total_steps(phases, n), "training", enabled=enabled) as bar:
            bar.update(completed=state["step"])
            previous: Phase | None = None
            first = 0 if resume_at is None else resume_at.phase
            for index in range(first, len(phases)):
                phase = phases[index]
                if status != "finished":
                    break
                state.update(phase=index, lr=phase.lr, batch=phase.batch_size or n)
                continuing = resume_at is not None
                if resume_at is not None:
                    optimizer = make_optimizer(phase, params)
                    optimizer.load_state_dict(resume_at.optimizer)
                    stream = BatchStream(n, phase.batch_size, phase.sampling, generator)
                    stream.load_state_dict(resume_at.stream)
                    steps = resume_at.phase_steps
                    resume_at = None
                else:
                    if optimizer is not None and same_kind(previous, phase):
                        update_hyperparameters(optimizer, phase)
                    else:
                        optimizer = make_optimizer(phase, params)
                    stream = BatchStream(n, phase.batch_size, phase.sampling, generator)
                    steps = 0
                previous = phase
                closure_mode = needs_closure(optimizer)
                reason = "max_steps"
                last = log.final.get("train_loss", math.inf)
                if (
                    not continuing
                    and phase.stop_loss
                    and logged_at["metrics"] == state["step"]
                    and last < phase.stop_loss
                ):
                    reason = "stop_loss"
                else:
                    while True:
                        if phase.max_steps is not None and steps >= phase.max_steps:
                            reason = "max_steps"
                            break
                        if phase.max_epochs is not None and stream.epochs >= phase.max_epochs - 1e-12:
                            reason = "max_epochs"
                            break
                        before = stream.examples
                        batch_loss = _step(model, optimizer, s.loss_fn, data, stream, closure_mode)
                        state["examples"] += stream.examples - before
                        state["step"] += 1
                        steps += 1
                        bar.advance()
                        if bad(batch_loss):
                            status, reason = "diverged", "diverged"
                            break
                        if state["step"] % s.log_every == 0:
                            train_loss = measure()["train_loss"]
                            bar.update(description=f"phase {index} loss {train_loss:.3g}")
                            if bad(train_loss):
                                status, reason = "diverged", "diverged"
                                break
                            if phase.stop_loss and train_loss < phase.stop_loss:
                                reason = "stop_loss"
                                break
                        probe_due()
                        checkpoint_due()
                        resume_due(index, steps, optimizer, stream)
                if logged_at["metrics"] != state["step"]:
                    if bad(measure(force_probes=True)["train_loss"]):
                        status, reason = "diverged", "diverged"
                else:
                    probe_due(force=True)
                phase_info.append({"phase": index, "name": phase.name, "steps": steps, "ended_by": reason})
                if index < len(phases) - 1 and status == "finished":
                    checkpoint_due(phase_end=True)
    except KeyboardInterrupt as interrupt:
        status = "stopped"
        result = _finish(model, optimizer, log, status, state["step"], phase_info, start, stage)
        raise _Interrupted(result, interrupt) from None
    return _finish(model, optimizer, log, status, state["step"], phase_info, start, stage)


def _finish(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    log: _Log,
    status: str,
    steps: int,
    phase_info: list[dict[str, Any]],
    start: float,
    stage: Path | None,
) -> TrainResult:
    seconds = time.perf_counter() - start
    if log.db is not None:
        log.db.close()
    if stage is not None:
        save_checkpoint(model, stage / "checkpoints" / "final.safetensors")
        if optimizer is not None:
            save_optimizer_state(optimizer, stage / "checkpoints" / "final.optim.pt")
        summary = {
            "status": status,
            "steps": steps,
            "final": log.final,
            "seconds": seconds,
            "phases": phase_info,
        }
        atomic_write_json(stage / "summary.json", summary)
    model.eval()
    return TrainResult(status, steps, log.history, dict(log.final), seconds, None, model, phase_info)
