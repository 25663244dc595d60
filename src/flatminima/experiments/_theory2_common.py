"""Shared pieces of the Theory II / IIb experiments: config-driven data, model and SGD training of
classifiers.

A *run config* is a JSON-able dict (so it can be a point of a :class:`~flatminima.runner.Sweep`)::

    {"data":  {"name": "digits", "n_train": 300, "random_labels": 0.0, "seed": 0},
     "model": {"name": "mlp", "seed": 0, "activation": "relu", "options": {"widths": [128]}},
     "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "momentum": 0.9, "max_epochs": 300,
               "stop_loss": 0.01, "options": {}},
     "seed": 0}

``data.seed`` drives the label corruption only (the random labels are a property of the data set, fixed
across minima); ``model.seed`` the initialisation; ``seed`` the minibatch order (and optimizer noise). The
loss is cross-entropy throughout (the papers train classifiers with it); targets are class indices.

Decision: every experiment of this group uses small MLPs on ``digits`` at ``smoke``/``default`` scale so that
the demo runs in minutes on 2 cores; the ``paper`` scale names the papers' data sets, which must be present
locally (:func:`check_data` raises DataNotFoundError before any training).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data, models
from ..data import Dataset
from ..errors import FlatminimaError
from ..objective import Objective
from ..training import TrainResult, train
from ._wu_common import _resumable

__all__ = [
    "LOSS",
    "PAPER_DATA",
    "build_model",
    "check_data",
    "classifier_objective",
    "collect",
    "load_data",
    "load_theta",
    "minimum_config",
    "paper_data",
    "run_config",
    "save_theta",
    "train_from_config",
]

LOSS = "cross_entropy"
THETA_FILE = "theta.pt"
PAPER_DATA = {"mnist": "MNIST", "cifar10": "CIFAR-10", "fashion-mnist": "Fashion-MNIST"}


def paper_data(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` (a data config) with the data set the run uses: the paper's, or at paper scale the
    ``reproduce --data`` substitute (:meth:`RunContext.dataset_name` records it, so tables say "ours:
    fashion-mnist, paper: MNIST")."""
    name = spec["name"]
    return {**spec, "name": ctx.dataset_name(name, PAPER_DATA.get(name, name))}


def run_config(
    data_cfg: dict[str, Any], model_cfg: dict[str, Any], train_cfg: dict[str, Any], seed: int = 0
) -> dict[str, Any]:
    """A fresh run config (deep copies of the parts; see the module docstring)."""
    return {
        "data": copy.deepcopy(data_cfg),
        "model": copy.deepcopy(model_cfg),
        "train": copy.deepcopy(train_cfg),
        "seed": int(seed),
    }


def minimum_config(config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """For sweeps over ``minimum`` (one SGD minimum per value): seed m = ``seed`` + ``minimum`` used for both
    the initialisation and the minibatch order; returns (m, the config with both seeds set)."""
    m = int(config["seed"]) + int(config["minimum"])
    return m, {**config, "seed": m, "model": {**config["model"], "seed": m}}


def load_data(cfg: dict[str, Any]) -> Dataset:
    """``flatminima.data.load`` with class-index targets from a ``data`` config."""
    kwargs = {k: v for k, v in cfg.items() if k != "name"}
    return data.load(cfg["name"], targets="index", **kwargs)


def check_data(cfg: dict[str, Any]) -> None:
    """Load the data set once so that missing files raise DataNotFoundError before long work."""
    load_data(cfg)


def build_model(cfg: dict[str, Any], ds: Dataset) -> nn.Module:
    """``flatminima.models.build`` from a ``model`` config (name, seed, activation, options)."""
    return models.build(
        cfg["name"],
        ds.input_shape,
        ds.num_classes,
        activation=cfg.get("activation", "relu"),
        seed=int(cfg.get("seed", 0)),
        **cfg.get("options", {}),
    )


def train_from_config(
    config: dict[str, Any],
    model: nn.Module | None = None,
    ds: Dataset | None = None,
    log_every: int = 20,
    run_dir: str | Path | None = None,
) -> tuple[nn.Module, Dataset, TrainResult]:
    """Train the model of ``config`` (or the given one) with the ``train`` phase; returns (model, data,
    result). The model is trained in place and left in eval mode. ``config["log_every"]`` overrides
    ``log_every``; with ``config["resume_every"]`` (paper scale) and a ``run_dir`` the run is written to
    ``run_dir/train`` with resume points, so a sweep started again continues it (and reuses a finished
    one)."""
    ds = load_data(config["data"]) if ds is None else ds
    model = build_model(config["model"], ds) if model is None else model
    phase = dict(config["train"])
    extra = _resumable(config, run_dir) if run_dir is not None else {"progress": False}
    every = int(config.get("log_every", log_every))
    result = train(model, ds, [phase], loss=LOSS, seed=int(config["seed"]), log_every=every, **extra)
    return result.model, ds, result


def classifier_objective(model: nn.Module, ds: Dataset, split: str = "train") -> Objective:
    """Cross-entropy Objective of ``model`` on a split (eval-mode BN, float32 as trained)."""
    part = ds.train if split == "train" else ds.test
    return Objective(model, LOSS, part.x, part.labels)


def save_theta(model: nn.Module, run_dir: str | Path) -> Path:
    """Save the flat parameter vector of ``model`` to ``run_dir/theta.pt`` (temp file, then rename)."""
    path = Path(run_dir) / THETA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    theta = torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()])
    tmp = path.with_suffix(".tmp")
    torch.save(theta, tmp)
    tmp.replace(path)
    return path


def load_theta(run_dir: str | Path) -> torch.Tensor:
    """The flat parameter vector saved by :func:`save_theta`."""
    return torch.load(Path(run_dir) / THETA_FILE, weights_only=True)


def collect(store: Any, sweep: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(grid values, results)`` of every point of ``sweep`` in grid order; a failed run is an error (the
    comparison would silently drop it otherwise)."""
    out = []
    records = {r.run_id: r for r in store.runs()}
    for point in sweep.expand():
        rec = records.get(point.run_id)
        if rec is None or rec.status != "done":
            error = getattr(rec, "error", None) if rec is not None else "not run"
            raise FlatminimaError(f"run {point.values} of sweep {sweep.name!r} failed: {error}")
        out.append((point.values, store.results(point.run_id)))
    return out
