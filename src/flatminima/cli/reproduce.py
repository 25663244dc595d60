"""``flatminima reproduce NAME`` (run an experiment, print its comparison, write the report) and
``flatminima report DIR``. Experiments are imported lazily so that ``flatminima --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from ..experiments.base import ExperimentResult

DEFAULT_OUT = Path("results")


def reproduce(
    name: str = typer.Argument(..., help="Experiment name (see `flatminima list`)."),
    scale: str = typer.Option(
        "default", help="smoke (seconds) | default (minutes) | paper (paper's setting)."
    ),
    out: Path | None = typer.Option(None, help="Output directory (default: results/NAME/SCALE)."),
    workers: int = typer.Option(1, min=1, help="Local worker processes for the experiment's sweeps."),
    cluster: str | None = typer.Option(
        None, help="Dask scheduler address, e.g. tcp://host:8786 (overrides --workers)."
    ),
    seed: int = typer.Option(0, help="Base random seed."),
) -> None:
    """Run a reproducible experiment, print ours vs the paper, write report.html and summary.md."""
    from .._validate import check_seed, check_writable_dir
    from ..experiments import get
    from ..report import write_report

    get(name)  # an unknown name fails before anything is checked or created
    check_seed(seed, "--seed")
    out_dir = out if out is not None else DEFAULT_OUT / name / scale
    check_writable_dir(out_dir, "--out folder")
    run_and_print(name, scale, out_dir, workers=workers, cluster=cluster, seed=seed)
    print(write_report(out_dir))


def run_and_print(
    name: str, scale: str, out_dir: Path, workers: int = 1, cluster: str | None = None, seed: int = 0
) -> ExperimentResult:
    """Run experiment ``name`` into ``out_dir`` and print its comparison table and verdict."""
    from ..experiments import get
    from ..report import print_comparison

    result = get(name).run(scale=scale, out_dir=out_dir, workers=workers, cluster=cluster, seed=seed)
    console = Console()
    print_comparison(result.rows, title=f"{result.name}: {result.title}", console=console)
    verdict = {True: "claim holds", False: "claim does NOT hold", None: "no verdict"}[result.passed]
    console.print(f"{result.paper} — {verdict} ({result.seconds:.1f} s)")
    return result


def report(
    directory: Path = typer.Argument(..., help="An experiment directory, or a parent of several."),
) -> None:
    """Write report.html and summary.md for every result.json under DIRECTORY; print the report path."""
    from .._validate import check_writable_dir
    from ..report import write_report

    if directory.is_dir():
        check_writable_dir(directory, "report folder")
    print(write_report(directory))


def register(app: typer.Typer) -> None:
    """Add the ``reproduce`` and ``report`` commands to the app."""
    app.command("reproduce")(reproduce)
    app.command("report")(report)
