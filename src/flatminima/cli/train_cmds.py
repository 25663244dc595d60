"""``flatminima demo``, ``flatminima train CONFIG.yaml`` and ``flatminima list``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConfigError

__all__ = ["demo", "list_experiments", "register", "train"]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def train(
    config: Path = typer.Argument(..., help="YAML run configuration (see examples/)."),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory to write (default runs/<config name>)."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Override the config's seed."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace a flatminima run directory at --out (never anything else)."
    ),
) -> None:
    """Train a model as described by CONFIG.yaml and write a run directory.

    Started again with the same --out and config after Ctrl-C, SIGTERM or a crash, it continues from the last
    resume point (config key resume_every, default every 60 s of training) and ends with the same numbers."""
    from ..config import load_config, train_from_config
    from ..training.rundir import pending_resume

    cfg = load_config(config)
    if out is None:
        out = Path("runs") / (config.stem if seed is None else f"{config.stem}-seed{seed}")
    pending = pending_resume(out)
    if pending is not None:
        Console(stderr=True).print(f"resuming {out} from step {pending[1]} (the run's last resume point)")
    result = train_from_config(cfg, out, seed=seed, overwrite=overwrite)
    table = Table(title=f"run {out}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("status", result.status)
    table.add_row("steps", str(result.steps))
    table.add_row("seconds", f"{result.seconds:.1f}")
    for name, value in result.final.items():
        table.add_row(name, _fmt(value))
    Console().print(table)
    print(f"run directory: {out}")


DEMO_EXPERIMENTS = ("wu2018-sharpness-vs-lr", "wu2018-escape", "theory2b-flatness", "theory2b-langevin")


def demo(
    out: Path = typer.Option(
        Path("demo-out"), "--out", help="Directory for the experiments, figures and report."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of data subsets, initializations and noise."),
    scale: str = typer.Option("default", "--scale", help="smoke (seconds) | default (minutes)."),
    quick: bool = typer.Option(
        False, "--quick", help="Only GD on digits at three learning rates with sharpness vs 2/lr (seconds)."
    ),
) -> None:
    """The main job on embedded data: GD sharpness vs 2/lr, SGD escape vs the stability test, flatness for
    natural vs random labels and Langevin's preference for wide minima; ends with the report's path."""
    if scale not in ("smoke", "default"):
        raise ConfigError(f"demo runs on embedded data: --scale must be smoke or default, got {scale!r}")
    if quick:
        _quick_demo(out, seed)
        return
    from ..report import write_report
    from .reproduce import run_and_print

    for name in DEMO_EXPERIMENTS:
        run_and_print(name, scale, out / name, seed=seed)
    print(f"report: {write_report(out)}")


def _quick_demo(out: Path, seed: int) -> None:
    from ..curvature import sharpness
    from ..training.demo import run_demo

    def measure(run: Any) -> dict[str, float]:
        return {"sharpness": sharpness(run.objective()).value}

    rows = run_demo(out, seed=seed, measure=measure)
    for row in rows:
        row["2/lr"] = 2.0 / row["lr"]
    table = Table(title="GD on digits (MLP, MSE, n = 1000): sharpness vs 2/lr (Wu, Ma & E 2018, Table 2)")
    keys = [k for k in rows[0] if k not in ("run", "curve")]
    for key in keys:
        table.add_column(key, justify="right")
    for row in rows:
        table.add_row(*(_fmt(row[k]) for k in keys))
    Console().print(table)
    print(f"loss curves: {Path(out) / 'loss_curves.png'}")


def list_experiments() -> None:
    """List the reproducible experiments."""
    from .. import experiments

    names = experiments.available()
    table = Table(title="reproducible experiments (flatminima reproduce NAME)")
    table.add_column("name", no_wrap=True, min_width=max(map(len, names), default=4))
    for column in ("paper", "title"):
        table.add_column(column)
    for name in names:
        exp = experiments.get(name)
        table.add_row(name, exp.paper, exp.title)
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``demo``, ``train`` and ``list`` to the app."""
    app.command("demo")(demo)
    app.command("train")(train)
    app.command("list")(list_experiments)
