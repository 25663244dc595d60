"""``plot_run``: a training run's metrics over steps, one panel per metric, without writing matplotlib.

Panels: ``"loss"`` (training and test loss), ``"accuracy"`` (training and test accuracy), ``"sharpness"`` (or
any sharpness probe's prefix) with the linear-stability line 2/lr from the run's logged learning rate (Wu,
Ma & E 2018, eq. 9: GD and SGD stay at a minimum only if its sharpness a <= 2/lr; the edge of stability is
where a meets it), and any other logged metric by name. Phase changes are marked by vertical lines. The y
axis is logarithmic where the values are positive and span more than ``LOG_SPAN`` (losses decaying over
decades), linear otherwise; ``log=`` overrides.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import unknown
from .figures import new_figure, save_figure
from .run_series import RunMetrics, run_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["LOG_SPAN", "default_panels", "plot_run", "run_figure"]

LOG_SPAN = 30.0  # max / min above which a positive series is drawn on a log axis
ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("train_loss", "test_loss"),
    "accuracy": ("train_acc", "test_acc"),
}
LABELS = {
    "train_loss": "training loss",
    "test_loss": "test loss",
    "train_acc": "training accuracy",
    "test_acc": "test accuracy",
    "lr": "learning rate",
}
_BOOKKEEPING = ("_residual", "_matvecs")


def _is_sharpness(name: str) -> bool:
    return "sharpness" in name and not name.endswith(_BOOKKEEPING)


def default_panels(runs: Sequence[RunMetrics]) -> list[str]:
    """The panels drawn when none are asked for: loss, accuracy (if logged), every probe metric (sharpness
    first; residuals and matvec counts left out) and the learning rate when it changes."""
    names = list(dict.fromkeys(n for r in runs for n in r.series))
    panels = []
    for alias, members in ALIASES.items():
        logged = [r.series[m][1] for r in runs for m in members if m in r.series]
        if any(np.isfinite(v).any() for v in logged):  # accuracy is NaN without class labels
            panels.append(alias)
    reserved = {m for members in ALIASES.values() for m in members} | {"lr", "epoch"}
    probes = [n for n in names if n not in reserved and not n.endswith(_BOOKKEEPING)]
    panels += sorted(probes, key=lambda n: (not _is_sharpness(n), names.index(n)))
    if any("lr" in r.series and len(np.unique(r.series["lr"][1])) > 1 for r in runs):
        panels.append("lr")
    return panels


def _members(panel: str, runs: Sequence[RunMetrics]) -> list[str]:
    available = sorted({n for r in runs for n in r.series} | set(ALIASES))
    if panel in ALIASES:
        return [m for m in ALIASES[panel] if any(m in r.series for r in runs)]
    if not any(panel in r.series for r in runs):
        raise unknown("metric", panel, available)
    return [panel]


def _use_log(values: list[np.ndarray], log: bool | None) -> bool:
    if log is not None:
        return log
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.array([])
    return bool(len(finite) and finite.min() > 0 and finite.max() / finite.min() > LOG_SPAN)


def _stability_line(ax: Any, run: RunMetrics, colour: str, label: str) -> None:
    """2/lr as a step function of the logged learning rate (linear stability bound, Wu et al. eq. 9)."""
    if "lr" not in run.series:
        return
    steps, lr = run.series["lr"]
    ok = lr > 0
    if ok.any():
        ax.step(steps[ok], 2.0 / lr[ok], where="post", color=colour, ls="--", lw=1.2, label=label)


def _title(runs: Sequence[RunMetrics]) -> str:
    if len(runs) > 1:
        return f"{len(runs)} runs: " + ", ".join(r.name for r in runs)
    r = runs[0]
    status = r.summary.get("status")
    steps = r.summary.get("steps")
    tail = f" ({status} after {steps} steps)" if status and steps is not None else ""
    return f"{r.name}{tail}"


def run_figure(
    run: Any,
    *metrics: str,
    log: bool | dict[str, bool] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """The figure of :func:`plot_run` (not saved)."""
    runs_in = list(run) if isinstance(run, (list, tuple)) else [run]
    runs = [run_metrics(r, None if names is None else names[i]) for i, r in enumerate(runs_in)]
    panels = list(metrics) or default_panels(runs)
    if not panels:
        panels = ["loss"]
    members = [_members(p, runs) for p in panels]
    fig, axes = new_figure(len(panels), 1, width=6.5, height=2.5, sharex=True, squeeze=False)
    many = len(runs) > 1
    for ax, panel, names_in_panel in zip(axes[:, 0], panels, members, strict=True):
        drawn = []
        for i, r in enumerate(runs):
            colour = f"C{i % 8}"
            for j, m in enumerate(names_in_panel):
                if m not in r.series:
                    continue
                steps, values = r.series[m]
                label = LABELS.get(m, m)
                label = f"{r.name}: {label}" if many else label
                style = dict(color=colour if many else f"C{j}", ls="-" if j == 0 else "--")
                ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=2.5, label=label, **style)
                drawn.append(values)
            if _is_sharpness(panel):
                _stability_line(ax, r, colour if many else "C3", f"{r.name}: 2/lr" if many else "2 / lr")
        per_panel = log.get(panel) if isinstance(log, dict) else log
        if _use_log(drawn, per_panel):
            ax.set_yscale("log")
        ax.set_ylabel(LABELS.get(panel, panel))
        ax.legend(loc="best")
    boundaries = sorted({ph["start"] for r in runs for ph in r.phases if ph["phase"] > 0})
    for step in boundaries:  # phase changes
        for ax in axes[:, 0]:
            ax.axvline(step, color="0.5", ls=":", lw=1)
    if not many and len(runs[0].phases) > 1:  # one run: every phase labelled in the top panel
        for ph in runs[0].phases:
            axes[0, 0].annotate(ph["label"], (ph["start"], 1.0), xycoords=("data", "axes fraction"),
                                xytext=(3, -3), textcoords="offset points", va="top", fontsize=7,
                                color="0.35")  # fmt: skip
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(_title(runs))
    return fig


def plot_run(
    run: Any,
    *metrics: str,
    path: str | Path | None = None,
    log: bool | dict[str, bool] | None = None,
    names: Sequence[str] | None = None,
) -> Figure:
    """Plot a training run's metrics over steps, one panel per metric; save a PNG at ``path`` if given.

    ``run``: a run directory, a :class:`~flatminima.LoadedRun`, a :class:`~flatminima.TrainResult` (no run
    directory needed), or a list of them (overlaid, one colour per run; ``names`` labels them).
    ``metrics``: ``"loss"``, ``"accuracy"``, ``"sharpness"`` (drawn with its 2/lr line), ``"lr"`` or any
    logged metric name; none: :func:`default_panels`. ``log``: True / False for every panel, a dict per
    panel, or None (log axis for positive series spanning more than :data:`LOG_SPAN`). An unknown metric is
    an :class:`~flatminima.UnknownNameError` listing the logged ones. Returns the figure.

    Example: ``fm.plot_run("runs/gd-lr0.5", "loss", "sharpness", path="eos.png")``.
    """
    fig = run_figure(run, *metrics, log=log, names=names)
    if path is not None:
        save_figure(fig, path)
    return fig
