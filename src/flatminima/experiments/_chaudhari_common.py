"""Shared helpers of the Theory III and Chaudhari-thesis experiments (``theory3_*``, ``chaudhari_*``).

* :func:`train_eval` — the one importable run function of their sweeps: load data, build a model, train it
  through ``phases`` with :func:`flatminima.training.train`, return train/test errors (optionally save the
  weights). Config keys: ``data`` (kwargs of :func:`flatminima.data.load`), ``model`` (``name``, ``seed``,
  ``init_scale`` and architecture kwargs), ``phases``, ``loss``, ``seed``, ``save``.
* :func:`sweep_rows` — run a sweep through ``ctx.run_sweep`` and return its table.
* :func:`check_data` — load the data once before long work (DataNotFoundError at ``paper`` scale).
* :func:`bar_figure`, :func:`comparable_row` — the shared figure and comparison-row shapes.

Decision (all classification experiments here): targets are class indices and the loss is cross-entropy,
as in the thesis and in Theory III's CIFAR runs; errors are fractions in [0, 1] (tables print percent).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import Dataset, load
from ..models import build, count_params
from ..report.figures import new_figure, save_figure
from ..runner import Sweep
from ..training import load_checkpoint, save_checkpoint, train
from .base import ComparisonRow, RunContext

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
    raised.
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
        progress=False,
    )
    out = {
        "status": result.status,
        "steps": result.steps,
        "params": count_params(model),
        "n_train": len(data.train.x),
        "train_loss": float(result.final.get("train_loss", float("nan"))),
        "train_error": error(model, data.train.x, data.train.labels),
        "test_error": error(model, data.test.x, data.test.labels),
    }
    if config.get("save"):
        save_checkpoint(model, Path(run_dir) / MODEL_FILE)
    return out


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


def comparable_row(quantity: str, ours: float, reference: float, paper: Any, tol: float) -> ComparisonRow:
    """Row "ours <= reference + tol" (errors as fractions; printed in percent)."""
    return ComparisonRow(
        quantity,
        round(100 * ours, 2),
        paper,
        f"<= {round(100 * reference, 2)} + {round(100 * tol, 1)} (pct. points)",
        bool(ours <= reference + tol),
    )


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
def method_phase(method: str, epochs: float, batch_size: int, seed: int, replicas: int = 3) -> dict[str, Any]:
    """One training phase of ``method`` at ``epochs`` *effective* epochs (thesis Table 3.1: epochs x L).

    The trainer counts every minibatch a closure-based optimizer draws, so ``max_epochs`` is the number of
    passes over the data made by all gradient evaluations: the same ``epochs`` for every single-replica
    method is the thesis's "comparable effective epochs". Replica methods (Parle, Elastic-SGD) get
    ``replicas x epochs`` in total, i.e. ``epochs`` per replica (the replicas run in parallel in the thesis).
    Hyper-parameters (our decisions for small nets; thesis values in brackets): Nesterov 0.9 everywhere
    [0.9]; SGD lr 0.1; Entropy-SGD L = 5 [5-20], inner_lr 0.1 [0.1], outer lr 1 (x <- z) [1], alpha 0.25,
    gamma 1 (no scoping over such short runs), thermal noise 1e-8 [1e-8..1e-6]; HEAT L = 5, gamma = 1e-3,
    lr 0.5 (the averaged gradient is less noisy); HJ L = 5 [5], gamma 1, lr 1 on (x - y_L)/gamma;
    Parle n = ``replicas``, L = 5, gamma 1, rho 10, lr 0.5; Elastic-SGD rho 1, lr 0.1.
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


def train_method(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function: :func:`train_eval` with the phase of ``config["method"]`` (:func:`method_phase`)
    built from ``epochs``, ``batch_size``, ``seed`` and ``replicas``."""
    phase = method_phase(
        config["method"], config["epochs"], config["batch_size"], int(config["seed"]), config["replicas"]
    )
    return train_eval({**config, "phases": [phase]}, run_dir)


def compare_methods(
    ctx: RunContext, setting: dict[str, Any], methods: Sequence[str], subdir: str
) -> dict[str, dict[str, float]]:
    """Train every method of ``methods`` for every seed of ``setting`` (keys ``data``, ``model``, ``epochs``,
    ``batch_size``, ``seeds``, ``replicas``) in one sweep; per method the mean and std over seeds of the test
    error, and the mean train error."""
    check_data(setting["data"])
    base = {k: setting[k] for k in ("data", "model", "epochs", "batch_size")}
    base.update(replicas=setting.get("replicas", 3), log_every=1000)
    grid = {"method": list(methods), "seed": list(setting["seeds"])}
    store = ctx.run_sweep(Sweep(base, grid, name=subdir), train_method, subdir=subdir)
    try:
        rows = store.table()
    finally:
        store.close()
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        done = [r for r in rows if r["method"] == m and r["run_status"] == "done"]
        test = torch.tensor([r["test_error"] for r in done], dtype=torch.float64)
        train_err = torch.tensor([r["train_error"] for r in done], dtype=torch.float64)
        out[m] = {
            "test_error": float(test.mean()) if len(test) else float("nan"),
            "test_std": float(test.std()) if len(test) > 1 else 0.0,
            "train_error": float(train_err.mean()) if len(test) else float("nan"),
        }
    return out


def train_model(
    data: Dataset, model_spec: dict[str, Any], phase: dict[str, Any], seed: int, **kwargs: Any
) -> nn.Module:
    """Build ``model_spec`` and train it on ``data`` with one phase (cross-entropy, no test evaluation);
    ``kwargs`` go to :func:`flatminima.training.train` (e.g. ``out``, ``checkpoint_every``, ``probes``)."""
    model = build_model(model_spec, data)
    kwargs.setdefault("log_every", 1000)
    train(model, data, [phase], loss="cross_entropy", seed=seed, eval_test=False, progress=False, **kwargs)
    return model.eval()
