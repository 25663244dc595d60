"""Shared helpers of the Theory III and Chaudhari-thesis experiments (``theory3_*``, ``chaudhari_*``).

* :func:`train_eval` — the one importable run function of their sweeps: load data, build a model, train it
  through ``phases`` with :func:`flatminima.training.train`, return train/test errors (optionally save the
  weights). Config keys: ``data`` (kwargs of :func:`flatminima.data.load`), ``model`` (``name``, ``seed``,
  ``init_scale`` and architecture kwargs), ``phases``, ``loss``, ``seed``, ``save``.
* :func:`sweep_rows` — run a sweep through ``ctx.run_sweep`` and return its table.
* :func:`check_data` — load the data once before long work (DataNotFoundError at ``paper`` scale).
* :func:`bar_figure` — the shared figure.
* :func:`compare_methods`, :func:`method_phases` — the optimizer tables of Chs. 3-5: every method for every
  seed under a protocol (``small`` for smoke/default; ``thesis-3.3.2``, ``thesis-4.6``, ``thesis-5.4`` at
  paper scale, each function's docstring listing what the thesis states and what it leaves to us).

Decision (all classification experiments here): targets are class indices and the loss is cross-entropy,
as in the thesis and in Theory III's CIFAR runs; errors are fractions in [0, 1] (tables print percent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Dataset, load
from ..errors import ConfigError, unknown
from ..models import build, count_params
from ..report.figures import new_figure, save_figure
from ..runner import Sweep
from ..training import load_checkpoint, save_checkpoint, train
from ._spread import Spread, precondition_row, spread
from ._theory2_common import paper_data
from ._wu_common import _resumable
from .base import ComparisonRow, Findings, RunContext

MODEL_FILE = "model.safetensors"


def load_data(spec: dict[str, Any]) -> Dataset:
    """:func:`flatminima.data.load` with class-index targets unless ``spec`` says otherwise."""
    spec = dict(spec)
    spec.setdefault("targets", "index")
    return load(spec.pop("name"), **spec)


def check_data(spec: dict[str, Any]) -> Dataset:
    """Load the data once up front, so missing files fail (DataNotFoundError) before any training."""
    return load_data(spec)


def build_model(spec: dict[str, Any], data: Dataset) -> nn.Module:
    """``fm.models.build`` from ``spec`` (``name``, ``seed``, kwargs); ``init_scale`` multiplies every
    parameter after initialisation (Theory III Figs. 16-17's "x10 init")."""
    spec = dict(spec)
    scale = float(spec.pop("init_scale", 1.0))
    model = build(spec.pop("name"), data.input_shape, data.num_classes, **spec)
    if scale != 1.0:
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model


def error(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Classification error (fraction) of ``model`` on ``(x, labels)``, eval mode, no gradients."""
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) != labels).double().mean())


def train_eval(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function (top level, importable): train and report errors; see the module docstring.

    A diverged run is recorded (``status`` "diverged", errors of the last finite weights as measured), not
    raised. With ``config["resume_every"]`` (paper scale) the training run is written to ``run_dir/train``
    with resume points: the sweep started again after an interruption continues it (``resumable``).
    """
    data = load_data(config["data"])
    model = build_model(config["model"], data)
    result = train(
        model,
        data,
        config["phases"],
        loss=config.get("loss", "cross_entropy"),
        seed=int(config.get("seed", 0)),
        log_every=int(config.get("log_every", 50)),
        eval_test=False,
        **_resumable(config, run_dir),
    )
    out = {
        "status": result.status,
        "steps": result.steps,
        "params": count_params(model),
        "n_train": len(data.train.x),
        "n_test": len(data.test.x),
        "train_loss": float(result.final.get("train_loss", float("nan"))),
        "train_error": error(model, data.train.x, data.train.labels),
        "test_error": error(model, data.test.x, data.test.labels),
    }
    if config.get("save"):
        save_checkpoint(model, Path(run_dir) / MODEL_FILE)
    return out


train_eval.resumable = True  # type: ignore[attr-defined]  # the runner keeps its run directory


def load_trained(config: dict[str, Any], run_dir: Path, data: Dataset) -> nn.Module:
    """The model a :func:`train_eval` run with ``save=True`` wrote to ``run_dir``."""
    model = build_model(config["model"], data)
    load_checkpoint(model, Path(run_dir) / MODEL_FILE)
    return model.eval()


def sweep_rows(
    ctx: RunContext, base: dict[str, Any], grid: dict[str, list[Any]], subdir: str, name: str = "sweep"
) -> list[dict[str, Any]]:
    """Run ``Sweep(base, grid)`` with :func:`train_eval` into ``ctx.out_dir/subdir``; its table rows."""
    store = ctx.run_sweep(Sweep(base, grid, name=name), train_eval, subdir=subdir)
    try:
        return store.table()
    finally:
        store.close()


def bar_figure(
    path: Path,
    labels: Sequence[str],
    values: Sequence[float],
    ylabel: str,
    title: str,
    paper: Sequence[float] | None = None,
) -> str:
    """Bar chart of ``values`` (ours) next to ``paper`` values when given; returns the file name."""
    fig, ax = new_figure(width=max(4.0, 0.9 * len(labels) + 1.5))
    pos = list(range(len(labels)))
    width = 0.4 if paper is not None else 0.7
    ax.bar([p - (width / 2 if paper is not None else 0) for p in pos], values, width, label="ours")
    if paper is not None:
        ax.bar([p + width / 2 for p in pos], paper, width, label="paper")
        ax.legend()
    ax.set_xticks(pos, labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    save_figure(fig, path)
    return path.name


# ------------------------------------------------------------------------- optimizer comparisons (Ch. 3-5)
PROTOCOLS = ("small", "thesis-3.3.2", "thesis-4.6", "thesis-5.4")


def _small_phases(method: str, epochs: float, batch_size: int, seed: int, replicas: int) -> dict[str, Any]:
    """Protocol ``small`` (smoke / default scale): one phase of ``method`` at ``epochs`` *effective* epochs.

    The trainer counts every minibatch a closure-based optimizer draws, so ``max_epochs`` is the number of
    passes over the data made by all gradient evaluations: the same ``epochs`` for every single-replica
    method is the thesis's "comparable effective epochs" (Table 3.1: epochs x L). Replica methods (Parle,
    Elastic-SGD) get ``replicas x epochs`` in total, i.e. ``epochs`` per replica (the replicas run in parallel
    in the thesis). Hyper-parameters (our decisions for small nets; thesis values in brackets): Nesterov 0.9
    [0.9]; SGD lr 0.1; Adam lr 1e-3 [1e-3]; Entropy-SGD L = 5 [5-20], inner_lr 0.1 [0.1], outer lr 1
    (x <- z) [1], alpha 0.25, gamma 1 (no scoping over such short runs), thermal noise 1e-8 [1e-8..1e-6];
    HEAT L = 5, gamma = 1e-3, lr 0.5 (the averaged gradient is less noisy); HJ L = 5 [5], gamma 1, lr 1 on
    (x - y_L)/gamma; Parle n = ``replicas``, L = 5, gamma 1, rho 10, lr 0.5; Elastic-SGD rho 1, lr 0.1.
    """
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "momentum": 0.9,
        "nesterov": True,
        "max_epochs": epochs,
    }
    ent = {"L": 5, "inner_lr": 0.1, "gamma": 1.0, "inner_momentum": 0.9, "seed": seed}
    phases: dict[str, dict[str, Any]] = {
        "SGD": {"optimizer": "sgd", "lr": 0.1},
        "Adam": {"optimizer": "adam", "lr": 1e-3, "momentum": 0.0, "nesterov": False},
        "Entropy-SGD": {"optimizer": "entropy-sgd", "lr": 1.0, "options": ent},
        "HEAT": {"optimizer": "heat-sgd", "lr": 0.5, "options": {"L": 5, "gamma": 1e-3, "seed": seed}},
        "HJ": {
            "optimizer": "hj-sgd",
            "lr": 1.0,
            "options": {"L": 5, "inner_lr": 0.1, "gamma": 1.0, "seed": seed},
        },
        "Parle": {
            "optimizer": "parle",
            "lr": 0.5,
            "max_epochs": replicas * epochs,
            "options": {**ent, "n_replicas": replicas, "rho": 10.0},
        },
        "Elastic-SGD": {
            "optimizer": "elastic-sgd",
            "lr": 0.1,
            "max_epochs": replicas * epochs,
            "options": {"n_replicas": replicas, "rho": 1.0, "seed": seed},
        },
    }
    return {**common, **phases[method]}


def _schedule(phase: dict[str, Any], lrs: Sequence[float], epochs: Sequence[float]) -> list[dict[str, Any]]:
    """``phase`` split into consecutive phases of ``epochs[i]`` effective epochs at lr ``lrs[i]`` (same
    optimizer and options, so the trainer keeps its state: momentum buffers, scoping counters)."""
    return [{**phase, "lr": lr, "max_epochs": e} for lr, e in zip(lrs, epochs, strict=True)]


def _thesis_3_3_2(method: str, model: str, batch_size: int, seed: int) -> tuple[list[dict], dict]:
    """Thesis Sec. 3.3.2 (Table 3.1, MNIST; ``model`` mnistfc or lenet), per method (phases, model kwargs).

    Adam baseline: 100 epochs, lr 1e-3 divided by 5 every 30 epochs, dropout 0.5 after each layer (no input
    dropout: the text names none). Entropy-SGD: 5 epochs of outer updates with L = 20 (100 effective epochs),
    SGLD step 0.1, outer lr 1 divided by 10 after the second epoch (= 2 L effective epochs), Nesterov 0.9 in
    both loops, thermal noise beta^{-1} = 1e-6 (Alg. 2's sqrt(2 eta / beta) N: ``temperature`` = 1e-6),
    scope gamma = 1e4 shrinking by a factor 1 + 1e-3 after each parameter update (``coupling`` 1e-4,
    ``coupling_growth`` 1e-3), alpha = 0.25, outer step x <- x - lr (x - z) (Sec. 3.2.3's practical form),
    dropout reduced to 0.15 (mnistfc) / 0.25 (lenet). Batch size 128 (Ch. 5's; Ch. 3 does not state one).
    """
    if method == "Adam":
        phase = {"optimizer": "adam", "batch_size": batch_size}
        return _schedule(phase, [1e-3, 2e-4, 4e-5, 8e-6], [30, 30, 30, 10]), {"dropout": 0.5}
    if method == "Entropy-SGD":
        L = 20
        options = {
            "L": L,
            "inner_lr": 0.1,
            "coupling": 1e-4,
            "coupling_growth": 1e-3,
            "temperature": 1e-6,
            "inner_momentum": 0.9,
            "alpha": 0.25,
            "seed": seed,
        }
        phase = {
            "optimizer": "entropy-sgd",
            "batch_size": batch_size,
            "momentum": 0.9,
            "nesterov": True,
            "options": options,
        }
        return _schedule(phase, [1.0, 0.1], [2 * L, 3 * L]), {"dropout": 0.15 if model == "mnistfc" else 0.25}
    raise ConfigError(f"protocol thesis-3.3.2 has the methods Adam and Entropy-SGD, not {method!r}")


def _thesis_4_6(method: str, batch_size: int, seed: int) -> tuple[list[dict], dict]:
    """Thesis Sec. 4.6.1-4.6.2 (Table 4.1, mnistfc with dropout 0.2 on the input and after each hidden
    layer, BN), per method (phases, model kwargs); each method trains for the effective epochs at which
    Table 4.1 reports it (Entropy-SGD 120, HEAT 200, HJ 200, SGD 194).

    Stated by the thesis: Entropy-SGD L = 20, beta_ex^{-1} = 1e-8 in eq. 4.40's sqrt(eta_y / beta_ex) N
    (``temperature`` = 5e-9 in Alg. 2's form), alpha = 0.25, eta_y = 0.1, eta = 0.1 divided by 5 every 3
    epochs (of outer updates, 3 L effective epochs); HJ L = 5, no noise, no averaging; HEAT L = 20;
    momentum and scoping "as in Sec. 3.2.3". Not stated (our choices, from Sec. 3.3.2's MNIST run): scope
    gamma = 1e4 shrinking by 1 + 1e-3 per update for Entropy-SGD and HJ, Nesterov 0.9 in both loops; the
    outer step x <- x - eta (x - <y>) (Sec. 3.2.3's practical form, which the thesis says Sec. 4.6.1.1 is
    "equivalent to"); HEAT perturbation variance gamma = 1e-3 (our optimizer's default), lr 0.1 divided by
    5 every 60 epochs, as the SGD baseline (lr 0.1, Nesterov 0.9, Sec. 3.3.3's CIFAR schedule).
    """
    base = {"batch_size": batch_size, "momentum": 0.9, "nesterov": True}
    scope = {"coupling": 1e-4, "coupling_growth": 1e-3, "inner_momentum": 0.9, "seed": seed}

    def every(phase: dict[str, Any], period: float, total: float) -> list[dict]:
        """lr 0.1 divided by 5 every ``period`` effective epochs, ``total`` in all."""
        n = math.ceil(total / period)
        lengths = [period] * (n - 1) + [total - period * (n - 1)]
        return _schedule({**base, **phase}, [0.1 / 5**i for i in range(n)], lengths)

    model = {"dropout": 0.2, "input_dropout": 0.2}
    if method == "Entropy-SGD":
        opts = {"L": 20, "inner_lr": 0.1, "temperature": 5e-9, "alpha": 0.25, **scope}
        return every({"optimizer": "entropy-sgd", "options": opts}, 3 * 20, 120), model
    if method == "HJ":
        opts = {"L": 5, "inner_lr": 0.1, "scale_by_gamma": False, **scope}
        return every({"optimizer": "hj-sgd", "options": opts}, 3 * 5, 200), model
    if method == "HEAT":
        opts = {"L": 20, "gamma": 1e-3, "seed": seed}
        return every({"optimizer": "heat-sgd", "options": opts}, 60, 200), model
    if method == "SGD":
        return every({"optimizer": "sgd"}, 60, 194), model
    raise ConfigError(f"protocol thesis-4.6 has the methods Entropy-SGD, HEAT, HJ and SGD, not {method!r}")


def _thesis_5_4(method: str, batch_size: int, seed: int, replicas: int, n_train: int) -> tuple[list, dict]:
    """Thesis Sec. 5.3.2 / 5.4.2 (Table 5.1, lenet with BN and dropout 0.25 on MNIST), per method.

    SGD: lr 0.1, Nesterov 0.9, divided by 10 at epochs 30, 60, 90 (100 epochs). Parle: n = ``replicas``
    (Table 5.1: n = 6), L = 25, alpha = 0.25, gamma0 = 100, rho0 = 1, scoping
    gamma_k = gamma0 (1 - 1/(2B))^{floor(k/L)} (eq. 5.10, B minibatches per epoch), gamma clipped at 1, rho at
    0.1, the normalized learning rates of Sec. 5.3.2 (inner step eta^(0) = the initial lr 0.1), Nesterov 0.9
    on y^a and x^a, none on x; lr 0.1 divided by 10 once, after the second epoch (an epoch of outer updates,
    i.e. 2 L effective epochs per replica), 100 effective epochs per replica in all. Entropy-SGD: the same
    update with n = 1, rho = inf (the thesis's special case (iii) of Parle, so both share one normalization).
    Elastic-SGD: Parle's special case (ii) (L = 1, gamma = inf) with rho scoping, n = ``replicas``, SGD's lr
    schedule. The dropout and batch size (128) are Sec. 5.4's; the total length is our choice (the thesis
    reports wall-clock times).
    """
    B = math.ceil(n_train / batch_size)
    base = {"batch_size": batch_size, "momentum": 0.9, "nesterov": True}
    model = {"dropout": 0.25}
    if method == "SGD":
        return _schedule({**base, "optimizer": "sgd"}, [0.1, 0.01, 1e-3, 1e-4], [30, 30, 30, 10]), model
    L = 25
    parle = {"L": L, "alpha": 0.25, "gamma": 100.0, "rho": 1.0, "inner_lr": 0.1, "inner_momentum": 0.9}
    parle.update(batches_per_epoch=B, seed=seed)
    if method == "Parle":
        phase = {**base, "optimizer": "parle", "options": {**parle, "n_replicas": replicas}}
        return _schedule(phase, [0.1, 0.01], [replicas * 2 * L, replicas * (100 - 2 * L)]), model
    if method == "Entropy-SGD":
        phase = {**base, "optimizer": "parle", "options": {**parle, "n_replicas": 1, "rho": math.inf}}
        return _schedule(phase, [0.1, 0.01], [2 * L, 100 - 2 * L]), model
    if method == "Elastic-SGD":
        opts = {"n_replicas": replicas, "rho": 1.0, "rho_min": 0.1, "batches_per_epoch": B, "seed": seed}
        phase = {**base, "optimizer": "elastic-sgd", "options": opts}
        lengths = [replicas * e for e in (30, 30, 30, 10)]
        return _schedule(phase, [0.1, 0.01, 1e-3, 1e-4], lengths), model
    raise ConfigError(f"protocol thesis-5.4 has Parle, Elastic-SGD, Entropy-SGD and SGD, not {method!r}")


def method_phases(method: str, setting: dict[str, Any], seed: int, n_train: int) -> tuple[list, dict]:
    """The training phases of ``method`` and the model kwargs it overrides (e.g. dropout) under
    ``setting["protocol"]`` (one of :data:`PROTOCOLS`; ``setting`` holds ``epochs``, ``batch_size``,
    ``replicas`` and ``model``)."""
    protocol = setting.get("protocol", "small")
    batch = int(setting["batch_size"])
    replicas = int(setting.get("replicas", 3))
    if protocol == "small":
        return [_small_phases(method, setting["epochs"], batch, seed, replicas)], {}
    if protocol == "thesis-3.3.2":
        return _thesis_3_3_2(method, setting["model"]["name"], batch, seed)
    if protocol == "thesis-4.6":
        return _thesis_4_6(method, batch, seed)
    if protocol == "thesis-5.4":
        return _thesis_5_4(method, batch, seed, replicas, n_train)
    raise unknown("protocol", protocol, PROTOCOLS)


def train_method(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function: :func:`train_eval` with the phases of ``config["method"]`` under the protocol of
    ``config`` (:func:`method_phases`); the model is initialised with the run's ``seed`` (the thesis repeats
    runs "with random initialization")."""
    seed = int(config["seed"])
    n_train = len(load_data(config["data"]).train.x)
    phases, overrides = method_phases(config["method"], config, seed, n_train)
    model = {**config["model"], **overrides, "seed": seed}
    return train_eval({**config, "model": model, "phases": phases}, run_dir)


train_method.resumable = True  # type: ignore[attr-defined]


@dataclass
class MethodRuns:
    """Per-seed results of one method: test and train errors (fractions), seeds, run statuses."""

    seeds: list[int]
    test: list[float]
    train: list[float]
    status: list[str]

    @property
    def test_spread(self) -> Spread:
        return spread(self.test)

    def summary(self) -> dict[str, Any]:
        s = self.test_spread
        return {
            "test_error": s.mean,
            "test_std": s.std,
            "train_error": float(np.mean(self.train)) if self.train else math.nan,
            "per_seed": dict(zip(self.seeds, self.test, strict=True)),
            "status": self.status,
        }


def compare_methods(
    ctx: RunContext, setting: dict[str, Any], methods: Sequence[str], subdir: str
) -> tuple[dict[str, MethodRuns], Dataset]:
    """Train every method of ``methods`` for every seed of ``setting`` (keys ``data``, ``model``, ``epochs``,
    ``batch_size``, ``seeds``, ``replicas``, ``protocol``, optional ``resume_every``) in one sweep; per
    method its :class:`MethodRuns` (seeds in order), and the data set (its test size and classes set the
    verdicts' resolution)."""
    data = check_data(setting["data"])
    base = {k: setting[k] for k in ("data", "model", "epochs", "batch_size")}
    base.update(
        replicas=setting.get("replicas", 3), protocol=setting.get("protocol", "small"), log_every=1000
    )
    if setting.get("resume_every"):  # paper scale: runs on disk with resume points and a progress bar
        base["resume_every"] = setting["resume_every"]
    grid = {"seed": list(setting["seeds"]), "method": list(methods)}  # seed-major: one full seed first
    store = ctx.run_sweep(Sweep(base, grid, name=subdir), train_method, subdir=subdir)
    try:
        rows = store.table()
    finally:
        store.close()
    out: dict[str, MethodRuns] = {}
    for m in methods:
        done = sorted(
            (r for r in rows if r["method"] == m and r["run_status"] == "done"), key=lambda r: r["seed"]
        )
        out[m] = MethodRuns(
            [int(r["seed"]) for r in done],
            [float(r["test_error"]) for r in done],
            [float(r["train_error"]) for r in done],
            [str(r["status"]) for r in done],
        )
    return out, data


def versus_rows(
    res: dict[str, MethodRuns],
    pairs: Sequence[tuple[str, str]],
    rule: Any,
    paper: dict[str, Any],
    n_test: int,
) -> list[ComparisonRow]:
    """One verdict row ``rule(A - B)`` (a :mod:`._spread` rule) per method pair ``(A, B)`` of ``pairs``, on
    their per-seed test errors, floored at one test example; ``paper[A]`` is the thesis's cell."""
    return [
        rule(
            f"{a} - {b} test error (pct. points)",
            res[a].test_spread,
            res[b].test_spread,
            paper[a],
            names=(a, b),
            resolution=1.0 / n_test,
        )
        for a, b in pairs
    ]


def optimizer_table(
    ctx: RunContext, setting: dict[str, Any], methods: Sequence[str], rows_fn: Any, title: str
) -> Findings:
    """The Findings of a thesis optimizer table: :func:`compare_methods`, the verdict rows
    ``rows_fn(results, n_test, classes)``, a bar chart of the mean test errors and the per-seed results."""
    res, data = compare_methods(ctx, setting, methods, "runs")
    rows = rows_fn(res, len(data.test.x), data.num_classes)
    fig = bar_figure(
        ctx.out_dir / "errors.png",
        list(methods),
        [100 * res[m].test_spread.mean for m in methods],
        "test error (%)",
        title,
    )
    config = {"setting": setting, "results": {m: r.summary() for m, r in res.items()}}
    return Findings(rows=rows, figures=[fig], config=config)


def resolve_setting(ctx: RunContext, setting: dict[str, Any]) -> dict[str, Any]:
    """``setting`` with the user's choices applied: the data set (``reproduce --data`` at paper scale,
    recorded by :meth:`RunContext.dataset_name`) and the seeds (``--seeds``, :meth:`RunContext.pick`)."""
    out = {**setting, "data": paper_data(ctx, setting["data"])}
    if "seeds" in setting:
        out["seeds"] = ctx.pick("seeds", setting["seeds"])
    return out


def learned_row(runs: MethodRuns, name: str, classes: int) -> ComparisonRow:
    """Precondition of every optimizer comparison: the baseline ``name`` learned, i.e. its mean test error is
    below half of chance 1 - 1/K (two broken methods would otherwise be "comparable")."""
    chance = 1 - 1 / classes
    mean = runs.test_spread.mean
    return precondition_row(
        f"{name} learned",
        round(100 * mean, 2),
        "trains",
        f"test error < chance / 2 = {50 * chance:.0f} %",
        bool(mean < chance / 2),
    )


def method_rows(res: dict[str, MethodRuns], paper: dict[str, Any]) -> list[ComparisonRow]:
    """Reference rows: every method's test error "mean ± std (n seeds)" in percent next to the thesis's."""
    return [
        ComparisonRow(f"{m} test error (%)", r.test_spread.text(scale=100), paper.get(m, "-"), "reference")
        for m, r in res.items()
    ]


def train_model(
    data: Dataset,
    model_spec: dict[str, Any],
    phase: dict[str, Any] | list[dict[str, Any]],
    seed: int,
    **kwargs: Any,
) -> nn.Module:
    """Build ``model_spec`` and train it on ``data`` with one phase or a list of phases (cross-entropy, no
    test evaluation); ``kwargs`` go to :func:`flatminima.training.train` (e.g. ``out``,
    ``checkpoint_every``, ``probes``)."""
    model = build_model(model_spec, data)
    kwargs.setdefault("log_every", 1000)
    phases = phase if isinstance(phase, list) else [phase]
    train(model, data, phases, loss="cross_entropy", seed=seed, eval_test=False, progress=False, **kwargs)
    return model.eval()
