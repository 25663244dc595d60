"""Shared pieces of the Wu, Ma & E 2018 experiments: settings per scale, "train to a minimum and measure it",
continuation runs from a saved minimum (the escape tests), and small statistics / plotting helpers.

Setting (Wu, Ma & E 2018, Sec. 4): MSE loss (``nn.MSELoss()``, mean over n*K) against one-hot targets, trained
until the training loss is below a threshold (1e-4 in the paper), then the sharpness a = lambda_max(H) and the
non-uniformity s = sqrt(lambda_max(Sigma)) (Def. 3) are measured at the final weights.

Decisions where the paper is silent or our scales differ from it (recorded in every result's ``config``):

* ``default`` / ``smoke`` scales use the embedded ``digits`` data (8x8 images, 10 classes) and a ReLU MLP with
  He-like uniform initialisation ``uniform:2.5`` (v ~ sqrt(6)); with PyTorch's default initialisation the
  minima GD finds on digits have a ~ 2, so 2/eta would bind only for eta >= 1 and the Table 2 relation could
  not be seen at moderate learning rates.
* GD/SGD on MSE converges slowly on digits; the loss threshold is 1e-3 at ``default`` (1 % of the zero
  predictor's loss 1/K = 0.1) with a step budget; every table shows the final training loss, so a run that
  stopped on the budget is visible. ``paper`` scale uses the paper's 1e-4.
* Non-uniformity and the stability test use the Gauss-Newton form of H_i (``method="ggn"``): at an
  interpolating MSE minimum H_i = J_i^T Q_i J_i exactly, and near one it drops only the residual term
  (reported
  as ``ggn_residual``), while the exact per-example Hessians of a not-quite-converged net carry small negative
  eigenvalues that would make (I - eta H)^2 exceed 1 spuriously.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import data as fm_data
from .. import models as fm_models
from ..curvature import SharpnessProbe, linear_stability, non_uniformity, sharpness
from ..errors import ConfigError, DataNotFoundError
from ..objective import Objective
from ..training import load_checkpoint, save_checkpoint, train
from ..training.rundir import RunLockedError

__all__ = [
    "PAPER_STOP_LOSS",
    "available_sets",
    "build_model",
    "cell",
    "check_scale",
    "continuation_run",
    "data_config",
    "escape_verdict",
    "load_dataset",
    "measure_minimum",
    "minimum_run",
    "model_config",
    "paper_run_settings",
    "pearson",
    "show_table",
    "spearman",
    "train_objective",
]

#: Wu, Ma & E 2018, Sec. 4.1: "trained ... to achieve a training loss smaller than 1e-4".
PAPER_STOP_LOSS = 1e-4
#: Largest number of logged points kept per curve in a run's metrics (plots need no more).
MAX_CURVE_POINTS = 400


def paper_run_settings(spec: dict[str, Any], ctx: Any, gd: bool = True) -> dict[str, Any]:
    """Run-config keys of paper-scale sweeps: resume points every ``spec["resume_every"]`` steps, full-batch
    runs logged every 100 steps (each log point evaluates the 10,000 test images: ~15 % of the run at every
    25 steps), and one training cache next to the experiments (``<out>/../.train-cache``) so that identical
    trainings are shared (see :func:`_resumable`). Empty below paper scale."""
    if not spec.get("resume_every"):
        return {}
    settings: dict[str, Any] = {
        "resume_every": spec["resume_every"],
        "train_cache": str(Path(ctx.out_dir).absolute().parent / ".train-cache"),
    }
    if gd:
        settings["log_every"] = 100
    return settings


def data_config(scale: str, n_train: int, dataset: str | None = None, **extra: Any) -> dict[str, Any]:
    """``fm.data.load`` keyword arguments: digits for smoke/default, ``dataset`` (FashionMNIST / CIFAR-10) for
    paper scale. ``extra`` (e.g. ``classes``, ``extra_random``) is passed on."""
    name = dataset or ("fashion-mnist" if scale == "paper" else "digits")
    return {"name": name, "n_train": n_train, "targets": "onehot", **extra}


def model_config(
    scale: str, widths: Sequence[int] = (128, 128), init: str = "uniform:2.5", paper_model: str = "wu-fnn"
) -> dict[str, Any]:
    """``fm.models.build`` arguments: an MLP of ``widths`` (smoke/default) or the paper's ``paper_model``."""
    if scale == "paper":
        return {"name": paper_model, "init": "default" if init == "uniform:2.5" else init}
    return {"name": "mlp", "widths": list(widths), "init": init}


def available_sets(
    sets: dict[str, tuple[dict[str, Any], dict[str, Any]]], ctx: Any
) -> tuple[dict[str, tuple[dict[str, Any], dict[str, Any]]], dict[str, str]]:
    """Split a paper-scale table's data columns ``{name: (data_cfg, model_cfg)}`` into those whose files are
    here and those that are not (``{name: "no data: <what is missing>"}``), loading each once (so a missing
    file is found before any long work). Only when no column has its data is the DataNotFoundError raised;
    below paper scale every column must load."""
    here: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    missing: dict[str, str] = {}
    first: DataNotFoundError | None = None
    for name, (data_cfg, model_cfg) in sets.items():
        try:
            load_dataset(data_cfg, ctx.seed)
        except DataNotFoundError as exc:
            if ctx.scale != "paper":
                raise
            first = first or exc
            missing[name] = f"no data: {str(exc).split(':')[0]} (see the data section of the README)"
            continue
        here[name] = (data_cfg, model_cfg)
    if not here and first is not None:
        raise first
    return here, missing


def load_dataset(cfg: dict[str, Any], seed: int = 0) -> fm_data.Dataset:
    """The data set of a run config (``cfg["data"]``); corruption seeded by ``seed``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    return fm_data.load(name, seed=seed, **kwargs)


def build_model(cfg: dict[str, Any], dataset: fm_data.Dataset, seed: int) -> nn.Module:
    """The model of a run config (``cfg["model"]``), initialised with ``seed``."""
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    init = kwargs.pop("init", "default")
    return fm_models.build(name, dataset.input_shape, dataset.num_classes, init=init, seed=seed, **kwargs)


def train_objective(model: nn.Module, dataset: fm_data.Dataset) -> Objective:
    """The MSE training objective I(theta) = (1/n) sum_i (1/K) ||f(x_i) - y_i||^2 at the model's weights."""
    return Objective(model, "mse", dataset.train.x, dataset.train.y)


def measure_minimum(obj: Objective, with_s: bool = True, seed: int = 0) -> dict[str, float]:
    """Sharpness a (Lanczos on H) and, if ``with_s``, non-uniformity s (Lanczos on Sigma, Gauss-Newton)."""
    a = sharpness(obj, tol=1e-4, max_iter=100, seed=seed)
    out = {"sharpness": a.value, "sharpness_residual": a.residual}
    if with_s:
        s = non_uniformity(obj, method="ggn", tol=1e-4, max_iter=100, seed=seed)
        out.update(non_uniformity=s.value, ggn_residual=float(s.extra.get("ggn_residual", math.nan)))
    return out


def _curves(history: list[dict[str, float]], names: Sequence[str], offset: int = 0) -> list[dict[str, Any]]:
    """Metric rows ``{step, name, value}`` for the runner's store, thinned to at most MAX_CURVE_POINTS."""
    stride = max(1, math.ceil(len(history) / MAX_CURVE_POINTS))
    keep = history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else [])
    return [
        {"step": int(row["step"]) + offset, "name": name, "value": float(row[name])}
        for row in keep
        for name in names
        if name in row and math.isfinite(float(row[name]))
    ]


def _phase(cfg: dict[str, Any], steps_key: str = "max_steps") -> dict[str, Any]:
    optimizer = cfg.get("optimizer", "gd")
    phase: dict[str, Any] = {"optimizer": optimizer, "lr": float(cfg["lr"])}
    if cfg.get(steps_key):
        phase["max_steps"] = int(cfg[steps_key])
    if cfg.get("max_epochs"):
        phase["max_epochs"] = float(cfg["max_epochs"])
    if cfg.get("stop_loss"):
        phase["stop_loss"] = float(cfg["stop_loss"])
    if optimizer == "sgd" and cfg.get("batch_size"):
        phase["batch_size"] = int(cfg["batch_size"])
    if optimizer == "lbfgs":
        phase["options"] = {"history_size": 20, "max_iter": 20, "line_search_fn": "strong_wolfe"}
    return phase


def _resumable(config: dict[str, Any], run_dir: Path, phase: dict[str, Any] | None = None) -> dict[str, Any]:
    """``train`` arguments of a sweep run: with ``config["resume_every"]`` (paper scale) the run is written to
    disk with resume points every that many steps, so a sweep started again after an interruption
    continues it (and reuses it when it had finished), with a progress bar on a terminal; otherwise in
    memory, silently. The run goes to ``run_dir/train``, or, with ``config["train_cache"]`` and the
    ``phase`` (with its log_every) given, to ``train_cache/<hash of data, model, seed, phase>``: two
    experiments that train the same network the same way (Table 2's GD at eta = 0.1 and Table 3's clean
    start minimum) then share one run."""
    every = config.get("resume_every")
    if not every:
        return {"progress": False}
    out = Path(run_dir) / "train"
    if config.get("train_cache") and phase is not None:
        keys = {k: config.get(k) for k in ("data", "model", "seed")}
        digest = hashlib.sha256(json.dumps({**keys, "phase": phase}, sort_keys=True).encode()).hexdigest()
        out = Path(config["train_cache"]) / digest[:16]
    return {"out": out, "resume_every": int(every), "reuse_finished": True}


def _train_waiting(*args: Any, **kwargs: Any) -> Any:
    """``train``, waiting while another process trains the same shared run (then reusing its result)."""
    while True:
        try:
            return train(*args, **kwargs)
        except RunLockedError:
            time.sleep(30)


def minimum_run(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function: train ``config["model"]`` on ``config["data"]`` with one phase (``optimizer`` gd |
    sgd | lbfgs, ``lr``, ``batch_size``, ``stop_loss``, ``max_steps``) from seed ``config["seed"]``, then
    measure a (and s when ``config["measure_s"]``) at the final weights. A diverged run returns its status and
    NaN measurements (the tables show '-'). With ``config["save"]`` the final weights go to
    ``run_dir/final.safetensors``."""
    seed = int(config.get("seed", 0))
    dataset = load_dataset(config["data"], seed)
    model = build_model(config["model"], dataset, seed)
    start = time.perf_counter()
    phase = _phase(config)
    n = len(dataset.train.x)
    # Log (and check stop_loss) about once per epoch for SGD, every 25 steps for GD / L-BFGS.
    log_every = int(config.get("log_every") or max(25, math.ceil(n / int(phase.get("batch_size") or n))))
    result = _train_waiting(
        model,
        dataset,
        [phase],
        loss="mse",
        seed=seed,
        log_every=log_every,
        **_resumable(config, run_dir, {**phase, "log_every": log_every}),
    )
    out: dict[str, Any] = {
        "status": result.status,
        "steps": result.steps,
        "train_loss": result.final.get("train_loss", math.nan),
        "test_acc": result.final.get("test_acc", math.nan),
        # loss of the best constant predictor (the class frequencies): a dead network sits there
        "constant_loss": float((dataset.train.y - dataset.train.y.mean(0)).pow(2).mean()),
        "train_seconds": time.perf_counter() - start,
        "sharpness": math.nan,
        "non_uniformity": math.nan,
    }
    stop = config.get("stop_loss")
    out["reached"] = bool(stop and math.isfinite(out["train_loss"]) and out["train_loss"] < stop)
    if result.status == "finished" and math.isfinite(out["train_loss"]):
        out.update(measure_minimum(train_objective(model, dataset), bool(config.get("measure_s")), seed))
        if config.get("save"):
            save_checkpoint(model, Path(run_dir) / "final.safetensors")
    out["metrics"] = _curves(result.history, ("train_loss", "test_acc"))
    return out


minimum_run.resumable = True  # type: ignore[attr-defined]  # the runner keeps its run directory


def escape_verdict(
    start_loss: float,
    start_sharpness: float,
    losses: Sequence[float],
    final_sharpness: float,
    diverged: bool,
    burst_factor: float = 3.0,
    drop_fraction: float = 0.1,
) -> tuple[bool, str]:
    """Did a continuation leave its starting minimum? (Wu, Ma & E 2018, Sec. 4.4: "a burst in loss and a drop
    of sharpness".) Escaped when the run diverged, or the training loss rose above ``burst_factor`` x its
    start
    (floored at 1e-6), or the final sharpness is below (1 - ``drop_fraction``) x the start sharpness.
    Returns (escaped, reason).

    Decision: our minima are not exact (training loss ~1e-3, not 0), so even a linearly stable one sees some
    gradient noise: loss fluctuations within a factor 3 and sharpness changes below 10 % count as staying.
    (Measured at smoke scale: stable continuations peaked at x1.2-x1.4 with <= 2 % sharpness change; unstable
    ones at >= x4 or >= 19 % sharpness drop.)"""
    if diverged:
        return True, "diverged"
    peak = max((v for v in losses if math.isfinite(v)), default=math.inf)
    if peak > burst_factor * max(start_loss, 1e-6):
        return True, f"loss burst x{peak / max(start_loss, 1e-6):.3g}"
    if math.isfinite(final_sharpness) and final_sharpness < (1 - drop_fraction) * start_sharpness:
        return True, f"sharpness {start_sharpness:.3g} -> {final_sharpness:.3g}"
    return False, f"stayed (peak loss x{peak / max(start_loss, 1e-6):.3g}, sharpness {final_sharpness:.3g})"


def continuation_run(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function of the escape experiments (Wu, Ma & E 2018, Sec. 4.4, Table 3 / Fig. 8; Fig. 9).

    Loads the minimum saved at ``config["start"]``, FIRST computes the prediction of the linear stability test
    (Thm 1, eq. 8: stable iff lambda_max{(I - eta H)^2 + eta^2 (n-B)/(B(n-1)) Sigma} <= 1) for
    (``lr``, ``batch_size``; None = GD) and prints it, THEN runs the optimizer for ``steps`` steps with a
    sharpness probe every ``probe_every`` steps and decides whether it escaped (:func:`escape_verdict`).
    The keys of ``config["variant"]`` (a sweep grid value), when present, override the top-level ones.
    """
    config = {**config, **config.get("variant", {})}
    seed = int(config.get("seed", 0))
    dataset = load_dataset(config["data"], int(config.get("data_seed", 0)))
    model = build_model(config["model"], dataset, 0)
    load_checkpoint(model, config["start"])
    n = len(dataset.train.x)
    batch = int(config["batch_size"]) if config.get("batch_size") else n
    obj = train_objective(model, dataset)
    stab = linear_stability(obj, float(config["lr"]), batch, method="ggn", seed=seed)
    label = config.get("label", f"lr={config['lr']} B={batch}")
    print(
        f"[{config.get('set', '')}] {label}: predicted "
        f"{'STABLE (stays)' if stab.stable else 'UNSTABLE (escapes)'}"
        f" - lambda_max(eq. 8) = {stab.spectral_value:.4f}, a = {stab.sharpness:.3g} vs 2/eta ="
        f" {stab.sharpness_bound:.3g}, s = {stab.non_uniformity:.3g}"
        f" vs bound {stab.non_uniformity_bound:.3g}",
        flush=True,
    )
    start_loss = float(obj.value())
    optimizer = "gd" if batch >= n else "sgd"
    phase = _phase({**config, "optimizer": optimizer, "batch_size": batch, "stop_loss": None}, "steps")
    probe = SharpnessProbe(every=int(config["probe_every"]), loss="mse", seed=seed)
    result = train(
        model,
        dataset,
        [phase],
        loss="mse",
        seed=seed,
        log_every=int(config.get("log_every", 10)),
        probes=[probe],
        **_resumable(config, run_dir),
    )
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    final_a = result.final.get("sharpness", math.nan) if result.status == "finished" else math.nan
    escaped, reason = escape_verdict(
        start_loss,
        stab.sharpness,
        losses,
        final_a,
        result.status == "diverged",
        float(config.get("burst_factor", 3.0)),
        float(config.get("drop_fraction", 0.1)),
    )
    theta_end = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    distance = float((theta_end - obj.theta).norm() / obj.theta.norm())
    print(f"[{config.get('set', '')}] {label}: {f'ESCAPED ({reason})' if escaped else reason}", flush=True)
    return {
        "predicted_stable": stab.stable,
        "spectral_value": stab.spectral_value,
        "start_sharpness": stab.sharpness,
        "start_non_uniformity": stab.non_uniformity,
        "sharpness_bound": stab.sharpness_bound,
        "non_uniformity_bound": stab.non_uniformity_bound,
        "start_loss": start_loss,
        "status": result.status,
        "escaped": escaped,
        "reason": reason,
        "final_sharpness": final_a,
        "final_train_loss": result.final.get("train_loss", math.nan),
        "final_test_acc": result.final.get("test_acc", math.nan),
        "peak_loss": max((v for v in losses if math.isfinite(v)), default=math.nan),
        "relative_distance": distance if math.isfinite(distance) else math.nan,
        "metrics": _curves(result.history, ("train_loss", "test_acc", "sharpness")),
    }


continuation_run.resumable = True  # type: ignore[attr-defined]


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation coefficient of the finite pairs (NaN with fewer than 3 pairs or no spread)."""
    pairs = np.array([(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)])
    if len(pairs) < 3 or pairs[:, 0].std() == 0 or pairs[:, 1].std() == 0:
        return math.nan
    return float(np.corrcoef(pairs[:, 0], pairs[:, 1])[0, 1])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (Pearson of the ranks; ties get their mean rank)."""
    from scipy.stats import rankdata

    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return math.nan
    xs, ys = zip(*pairs, strict=True)
    return pearson(list(rankdata(xs)), list(rankdata(ys)))


def check_scale(scale: str, table: dict[str, Any]) -> Any:
    """The entry of ``table`` for ``scale`` (ConfigError for a scale the experiment does not define)."""
    if scale not in table:
        raise ConfigError(f"scale {scale!r} not defined here; choose one of {sorted(table)}")
    return table[scale]


def cell(value: Any, digits: int = 4) -> str:
    """A table cell: ``digits`` significant digits; NaN / None as '-' (diverged or not measured)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def show_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    """Print ``rows`` as a rich table on stdout; write them as a markdown table to ``path`` (atomically)."""
    from rich.console import Console
    from rich.table import Table

    from ..report.tables import markdown_table
    from .base import atomic_write_text

    texts = [[cell(v) for v in row] for row in rows]
    table = Table(title=title)
    for h in headers:
        table.add_column(h, justify="right")
    for row in texts:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file or pipe: do not squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)
    return atomic_write_text(path, f"# {title}\n\n" + markdown_table(headers, texts))


def run_continuations(
    ctx: Any, name: str, base: dict[str, Any], variants: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Run :func:`continuation_run` for every variant (a sweep in ``out_dir/continue``); return one dict per
    run: the variant, its results and ``curves`` = {metric: (steps, values)}."""
    from ..runner import Sweep

    store = ctx.run_sweep(
        Sweep(base, {"variant": variants}, name=f"{name}-continue"), continuation_run, subdir="continue"
    )
    outcomes = []
    for rec in store.runs():
        curves: dict[str, tuple[list[int], list[float]]] = {}
        for m in store.metrics(rec.run_id):
            steps, values = curves.setdefault(m["name"], ([], []))
            steps.append(m["step"])
            values.append(m["value"])
        outcomes.append({**rec.config["variant"], **store.results(rec.run_id), "curves": curves})
    store.close()
    return outcomes
