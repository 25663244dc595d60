"""Shared pieces of the Keskar et al. 2017 and Foret et al. 2021 experiments: "train one variant, then measure
the sharpness of where it ended", per-variant summaries over seeds, and the test-error tolerance.

:func:`train_and_measure` is the sweep run function: it trains ``config["model"]`` on ``config["data"]`` with
one phase (the keys of ``config["variant"]`` override the base phase: optimizer, batch size, epochs, options),
cross-entropy loss, then measures on the training set: the Hessian's lambda_max (Lanczos), Keskar et al.'s
eps-sharpness for every ``eps`` (full space and, with ``subspace``, a random subspace), and with ``m_rho`` /
``m`` Foret et al.'s m-sharpness (worst case, L2, c = 1). A diverged run is recorded with NaN measurements.

Test-error tolerance (Foret: "equal or better"): two binomial standard errors of the reference's measured
test error on the test set, 2 sqrt(p (1 - p) / n_test) — the spread of an error estimate on a test set of
that size (the same reasoning as ``_chaudhari_common``'s fixed tolerances), not a fit to our numbers.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ..curvature import sharpness
from ..landscape import adaptive_sharpness, epsilon_sharpness
from ..objective import Objective
from ..report.figures import new_figure, save_figure
from ..runner import Sweep
from ..training import train
from ._chaudhari_common import build_model, check_data, error, load_data
from .base import RunContext

__all__ = ["binomial_tolerance", "mean_std", "run_variants", "train_and_measure", "variant_bars"]


def _phase(config: dict[str, Any]) -> dict[str, Any]:
    phase = dict(config["phase"])
    phase.update({k: v for k, v in config["variant"].items() if k != "label"})
    return phase


def train_and_measure(config: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Sweep run function (module docstring)."""
    seed = int(config.get("seed", 0))
    data = load_data(config["data"])
    model = build_model({**config["model"], "seed": seed}, data)
    start = time.perf_counter()
    result = train(
        model,
        data,
        [_phase(config)],
        loss="cross_entropy",
        seed=seed,
        log_every=int(config.get("log_every", 50)),
        eval_test=False,
        progress=False,
    )
    out: dict[str, Any] = {
        "label": config["variant"]["label"],
        "status": result.status,
        "steps": result.steps,
        "train_loss": float(result.final.get("train_loss", math.nan)),
        "train_seconds": time.perf_counter() - start,
        "train_error": math.nan,
        "test_error": math.nan,
        "sharpness": math.nan,
    }
    eps_list = list(config.get("eps", []))
    for eps in eps_list:
        out[f"eps_{eps:g}"] = math.nan
        if config.get("subspace"):
            out[f"eps_{eps:g}_subspace"] = math.nan
    if result.status != "finished" or not math.isfinite(out["train_loss"]):
        return out
    out["train_error"] = error(model, data.train.x, data.train.labels)
    out["test_error"] = error(model, data.test.x, data.test.labels)
    out["n_test"] = len(data.test.x)
    obj = Objective(model, "cross_entropy", data.train.x, data.train.y)
    a = sharpness(obj, tol=1e-3, seed=seed)
    out.update(sharpness=a.value, sharpness_residual=a.residual)
    steps = int(config.get("ascent_steps", 20))
    for eps in eps_list:
        out[f"eps_{eps:g}"] = epsilon_sharpness(obj, eps=eps, steps=steps, seed=seed).value
        if config.get("subspace"):
            sub = epsilon_sharpness(obj, eps=eps, subspace=int(config["subspace"]), steps=steps, seed=seed)
            out[f"eps_{eps:g}_subspace"] = sub.value
    if config.get("m_rho"):
        m = adaptive_sharpness(
            obj, rho=float(config["m_rho"]), norm=2, adaptive=False, m=config.get("m"), steps=steps, seed=seed
        )
        out.update(m_sharpness=m.value, m_sharpness_stderr=m.stderr)
    return out


def run_variants(
    ctx: RunContext, name: str, base: dict[str, Any], variants: list[dict[str, Any]], seeds: list[int]
) -> list[dict[str, Any]]:
    """Check the data (DataNotFoundError first), run every variant x seed; the result rows."""
    check_data(base["data"])
    grid = {"variant": variants, "seed": [ctx.seed + s for s in seeds]}
    store = ctx.run_sweep(Sweep(base, grid, name=name), train_and_measure, subdir="runs")
    try:
        return store.table()
    finally:
        store.close()


def mean_std(rows: list[dict[str, Any]], label: str, key: str) -> tuple[float, float]:
    """Mean and std (ddof=1; 0 for one seed) of ``key`` over the rows of variant ``label``; NaN if any is
    missing (a diverged seed makes the variant's entry '-')."""
    values = [float(r.get(key, math.nan)) for r in rows if r.get("label") == label]
    if not values or not all(math.isfinite(v) for v in values):
        return math.nan, math.nan
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, std


def binomial_tolerance(error_rate: float, n_test: int) -> float:
    """Two binomial standard errors of an error rate measured on ``n_test`` examples (module docstring)."""
    p = min(max(error_rate, 1.0 / n_test), 1 - 1.0 / n_test)
    return 2.0 * math.sqrt(p * (1 - p) / n_test)


def variant_bars(
    path: Path, labels: list[str], panels: dict[str, tuple[list[float], list[float]]], title: str
) -> str:
    """One bar panel per quantity (mean ± std over seeds; log scale for positive values spanning > 20x);
    returns the file name."""
    fig, axes = new_figure(1, len(panels), width=3.6, height=3.2, squeeze=False)
    for ax, (quantity, (means, stds)) in zip(axes[0], panels.items(), strict=True):
        ax.bar(labels, means, yerr=stds, capsize=4, color=["C0", "C1", "C2", "C3"][: len(labels)])
        if all(m > 0 for m in means if math.isfinite(m)) and max(means) > 20 * min(means):
            ax.set_yscale("log")
        ax.set(title=quantity)
    fig.suptitle(title)
    save_figure(fig, path)
    return path.name
