"""The demo: full-batch GD on ``digits`` at three learning rates, the loss curves and a table.

An MLP (64-128-128-10, ReLU) is trained with GD on the MSE loss against one-hot targets (the setting of Wu,
Ma & E 2018, Sec. 4, on the embedded ``digits`` data, n = 1000) at each learning rate for a fixed number of
steps. Small learning rates descend smoothly; the largest one runs at the edge of stability (sharpness pinned
near 2/lr, Wu et al. Table 2), visible as a non-monotone, oscillating loss curve. Each run is a run directory
under ``out_dir/runs``; an optional ``measure(run: LoadedRun) -> dict`` adds columns to the table (e.g.
sharpness next to 2/lr).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write_json
from .._progress import progress_enabled
from ..config import DataConfig, ModelConfig, Phase, TrainConfig, train_from_config
from ..errors import ConfigError
from ..report.figures import save_figure
from .loading import LoadedRun, load_run

__all__ = ["DEMO_LRS", "demo_config", "plot_curves", "run_demo"]

DEMO_LRS = (0.1, 0.5, 2.0)


def demo_config(
    lr: float, steps: int, n_train: int = 1000, seed: int = 0, widths: Sequence[int] = (128, 128)
) -> TrainConfig:
    """The configuration of one demo run (GD, MSE, one-hot digits)."""
    return TrainConfig(
        seed=seed,
        data=DataConfig(name="digits", n_train=n_train, targets="onehot"),
        model=ModelConfig(name="mlp", widths=list(widths), activation="relu"),
        loss="mse",
        phases=[Phase(optimizer="gd", lr=lr, max_steps=steps, name=f"gd lr={lr:g}")],
        log_every=max(1, steps // 100),
    )


def plot_curves(curves: dict[str, tuple[list[int], list[float]]], path: Path, title: str) -> Path:
    """Training-loss curves (log scale) to a PNG, written to a temporary name and renamed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (steps, values) in curves.items():
        ax.plot(steps, values, label=label, lw=1.5)
    ax.set_yscale("log")
    ax.set_xlabel("GD step")
    ax.set_ylabel("training loss (MSE)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return path


def run_demo(
    out_dir: str | Path = "demo-out",
    lrs: Sequence[float] = DEMO_LRS,
    steps: int = 400,
    n_train: int = 1000,
    seed: int = 0,
    widths: Sequence[int] = (128, 128),
    measure: Callable[[LoadedRun], dict[str, Any]] | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Train the demo runs; return one row per learning rate, write ``loss_curves.png`` and ``demo.json``.

    Row keys: ``lr``, ``status``, ``steps``, ``train_loss``, ``test_acc``, then whatever ``measure`` returns
    for the run (called with the :class:`LoadedRun` of the final weights), then ``run`` (the run directory).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    if not lrs:
        raise ConfigError("give at least one learning rate")
    configs = [demo_config(lr, steps, n_train, seed, widths) for lr in lrs]
    rows, curves = [], {}
    show = progress_enabled() if progress is None else progress
    for cfg, lr in zip(configs, lrs, strict=True):
        run_dir = out / "runs" / f"gd-lr{lr:g}"
        result = train_from_config(cfg, run_dir, progress=show)
        row: dict[str, Any] = {
            "lr": lr,
            "status": result.status,
            "steps": result.steps,
            "train_loss": result.final.get("train_loss", float("nan")),
            "test_acc": result.final.get("test_acc", float("nan")),
        }
        if measure is not None:
            row.update(measure(load_run(run_dir)))
        row["run"] = str(run_dir)
        rows.append(row)
        curves[f"lr = {lr:g}"] = result.series("train_loss")
    plot_curves(curves, out / "loss_curves.png", f"GD on digits (n = {n_train}, MSE)")
    atomic_write_json(out / "demo.json", {"rows": rows})
    return rows
