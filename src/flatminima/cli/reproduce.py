"""``flatminima reproduce NAME`` (run an experiment, print its comparison, write the report) and
``flatminima report DIR``. Experiments are imported lazily so that ``flatminima --help`` stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from ..errors import ConfigError

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
    data: str | None = typer.Option(
        None, "--data", help="At --scale paper: use this data set, not the paper's (e.g. fashion-mnist)."
    ),
    seeds: str | None = typer.Option(None, "--seeds", help="Run only these seeds of the grid, e.g. 0,1."),
    lrs: str | None = typer.Option(None, "--lrs", help="Run only these learning rates, e.g. 0.1,0.5."),
    only: list[str] = typer.Option(
        [], "--only", help="Run only these cells of a grid axis: AXIS=v1,v2 (repeatable; see the experiment)."
    ),
) -> None:
    """Run a reproducible experiment, print ours vs the paper, write report.html and summary.md.

    Long runs (paper scale) resume after an interruption: run the same command again."""
    from .._validate import check_seed, check_writable_dir
    from ..experiments import get
    from ..report import write_report

    get(name)  # an unknown name fails before anything is checked or created
    check_seed(seed, "--seed")
    cells = parse_cells(seeds, lrs, only)
    out_dir = out if out is not None else DEFAULT_OUT / name / scale
    check_writable_dir(out_dir, "--out folder")
    run_and_print(name, scale, out_dir, workers=workers, cluster=cluster, seed=seed, data=data, only=cells)
    print(write_report(out_dir))


def _value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_cells(seeds: str | None, lrs: str | None, only: list[str]) -> dict[str, list[int | float | str]]:
    """``--seeds 0,1 --lrs 0.1 --only batch=4,100`` -> ``{"seeds": [0, 1], "lrs": [0.1], "batch": [4, 100]}``.

    Values are ints where they parse as ints, else floats, else strings."""
    pairs = [f"seeds={seeds}"] * (seeds is not None) + [f"lrs={lrs}"] * (lrs is not None) + list(only)
    cells: dict[str, list[int | float | str]] = {}
    for pair in pairs:
        axis, sep, values = pair.partition("=")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not axis.strip() or not items:
            raise ConfigError(f"expected AXIS=v1,v2 for a grid restriction, got {pair!r}")
        if axis.strip() in cells:
            raise ConfigError(f"grid axis {axis.strip()!r} restricted twice")
        cells[axis.strip()] = [_value(v) for v in items]
    return cells


def run_and_print(
    name: str,
    scale: str,
    out_dir: Path,
    workers: int = 1,
    cluster: str | None = None,
    seed: int = 0,
    data: str | None = None,
    only: dict[str, list[int | float | str]] | None = None,
) -> ExperimentResult:
    """Run experiment ``name`` into ``out_dir`` and print its comparison table and verdict."""
    from ..experiments import get
    from ..report import print_comparison

    result = get(name).run(
        scale=scale, out_dir=out_dir, workers=workers, cluster=cluster, seed=seed, data=data, only=only
    )
    console = Console()
    title = f"{result.name}: {result.title}" + (f" ({result.data_note()})" if result.data else "")
    print_comparison(result.rows, title=title, console=console)
    verdict = {True: "claim holds", False: "claim does NOT hold", None: "no verdict"}[result.passed]
    console.print(f"{result.paper} — {verdict} ({result.seconds:.1f} s)")
    if result.cells_note():
        console.print(f"cells run (part of the paper's grid): {result.cells_note()}")
    return result


def report(
    directory: Path = typer.Argument(
        ..., help="An experiment or training-run directory, or a parent of several (e.g. a sweep)."
    ),
) -> None:
    """Write report.html and summary.md for every result.json under DIRECTORY, or else for the training runs
    there (config, summary, final metrics, metric plots); print the report path."""
    from .._validate import check_writable_dir
    from ..report import write_report

    if directory.is_dir():
        check_writable_dir(directory, "report folder")
    print(write_report(directory))


def register(app: typer.Typer) -> None:
    """Add the ``reproduce`` and ``report`` commands to the app."""
    app.command("reproduce")(reproduce)
    app.command("report")(report)
