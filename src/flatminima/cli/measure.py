"""``flatminima measure WHAT --run DIR``: curvature measurements on a trained run's final checkpoint.

WHAT: sharpness | spectrum | trace | nonuniformity | stability, plus any name in ``PROBES`` of
``flatminima.cli.measure_probes`` and ``SHARPNESS`` of ``flatminima.cli.measure_sharpness`` (dicts name ->
function(loaded_run, options: dict) -> dict). The result is printed as a table and written to
``DIR/measure-<what>.json`` (temporary file, then rename). ``--n`` restricts to the first n training examples
(Wu, Ma & E 2018 measure on n = 1000).
``stability`` takes ``--lr`` / ``--batch-size`` from the options, else from the run's last training phase.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from .._io import atomic_write_json
from ..errors import ConfigError, unknown
from .measure_probes import PROBES, objective_from_options
from .measure_sharpness import SHARPNESS

__all__ = ["BUILTIN", "measure", "register", "run_measurement"]


def _load_run(path: str):
    from ..training import load_run

    return load_run(path)


def _sharpness(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import sharpness

    est = sharpness(objective_from_options(run, o), tol=o["tol"], max_iter=o["max_iter"], seed=o["seed"])
    return _estimate_dict(est)


def _trace(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import hessian_trace

    obj = objective_from_options(run, o)
    est = hessian_trace(obj, matvecs=o["matvecs"], method=o["trace_method"], seed=o["seed"])
    return _estimate_dict(est)


def _nonuniformity(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import non_uniformity

    obj = objective_from_options(run, o)
    est = non_uniformity(obj, method=o["method"], tol=o["tol"], max_iter=o["max_iter"], seed=o["seed"])
    return _estimate_dict(est)


def _spectrum(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import hessian_eigenvalues, plot_density, spectrum_summary

    obj = objective_from_options(run, o)
    summary = spectrum_summary(
        obj, threshold=o["threshold"], steps=o["steps"], runs=o["runs"], tol=o["tol"], seed=o["seed"]
    )
    top = hessian_eigenvalues(obj, k=o["k"], tol=o["tol"], seed=o["seed"])
    png = plot_density(summary.density, Path(o["run"]) / "measure-spectrum.png")
    d = summary.to_dict()
    return {
        "near_zero_share": d["near_zero_share"],
        "near_zero_stderr": d["near_zero_stderr"],
        "threshold": d["threshold"],
        "top_eigenvalues": top,
        "most_negative_eigenvalue": d["most_negative_eigenvalue"]["value"],
        "most_negative_residual": d["most_negative_eigenvalue"]["residual"],
        "plot": str(png),
        "density": d["density"],
    }


def _last_phase(run) -> Any:
    phases = getattr(getattr(run, "config", None), "phases", None) or [None]
    return phases[-1]


def _stability(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import linear_stability

    obj = objective_from_options(run, o)
    phase = _last_phase(run)
    lr = o.get("lr") if o.get("lr") is not None else getattr(phase, "lr", None)
    if lr is None:
        raise ConfigError("stability needs a learning rate: pass --lr")
    batch = o.get("batch_size")
    if batch is None:
        batch = getattr(phase, "batch_size", None) or obj.n
    batch = min(int(batch), obj.n)
    st = linear_stability(
        obj, lr=lr, batch_size=batch, tol=o["tol"], max_iter=o["max_iter"], method=o["method"], seed=o["seed"]
    )
    return st.to_dict()


BUILTIN: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "sharpness": _sharpness,
    "spectrum": _spectrum,
    "trace": _trace,
    "nonuniformity": _nonuniformity,
    "stability": _stability,
}


def _estimate_dict(est) -> dict[str, Any]:
    d = est.to_dict()
    d["extra"] = {k: v for k, v in d["extra"].items() if not hasattr(v, "shape")}
    return d


def run_measurement(what: str, options: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """Measure ``what`` on the run ``options["run"]``; returns the result and the JSON path written."""
    table = {**BUILTIN, **PROBES, **SHARPNESS}
    if what not in table:
        raise unknown("measurement", what, list(table))
    run = _load_run(options["run"])
    result = table[what](run, options)
    path = atomic_write_json(
        Path(options["run"]) / f"measure-{what}.json", {"what": what, "options": options, "result": result}
    )
    return result, path


def _print(what: str, result: dict[str, Any], path: Path) -> None:
    table = Table(title=f"measure {what}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, value in result.items():
        if isinstance(value, dict):
            for k2, v2 in value.items():
                if isinstance(v2, (int, float, str, bool)):
                    table.add_row(f"{key}.{k2}", _fmt(v2))
        elif isinstance(value, (list, tuple)):
            if len(value) <= 10 and all(isinstance(v, (int, float)) for v in value):
                table.add_row(key, ", ".join(_fmt(v) for v in value))
        else:
            table.add_row(key, _fmt(value))
    console = Console()
    console.print(table)
    console.print(f"written: {path}")


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def measure(
    what: str = typer.Argument(
        ..., help="sharpness | spectrum | trace | nonuniformity | stability | flatness | noise | margins | "
        "epsilon-sharpness | adaptive-sharpness | preconditioned-sharpness | noise-scale"
    ),
    run: str = typer.Option(..., "--run", help="run directory (written by flatminima train)"),
    lr: float | None = typer.Option(None, "--lr", help="stability: learning rate (default: the run's)"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="stability: batch size (default: the run's)"
    ),
    n: int | None = typer.Option(None, "--n", help="use the first n training examples"),
    split: str = typer.Option("train", "--split", help="train | test"),
    tol: float = typer.Option(1e-4, "--tol", help="relative eigen-residual tolerance"),
    max_iter: int = typer.Option(100, "--max-iter", help="most Lanczos products"),
    method: str = typer.Option("auto", "--method", help="non-uniformity / stability: auto | exact | ggn"),
    matvecs: int = typer.Option(100, "--matvecs", help="trace: Hessian-vector products"),
    trace_method: str = typer.Option("hutch++", "--trace-method", help="trace: hutch++ | hutchinson"),
    k: int = typer.Option(5, "--k", help="spectrum: number of top eigenvalues"),
    steps: int = typer.Option(80, "--steps", help="spectrum: Lanczos steps per SLQ run"),
    runs: int = typer.Option(10, "--runs", help="spectrum: SLQ runs"),
    threshold: float = typer.Option(1e-4, "--threshold", help="spectrum: |lambda| below this counts as ~0"),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="examples per chunk"),
    eps: float | None = typer.Option(
        None, "--eps", help="flatness: loss tolerance of the radius (eq. 11) [0.05]; epsilon-sharpness [1e-3]"
    ),
    directions: int = typer.Option(20, "--directions", help="flatness: random directions"),
    params: str = typer.Option("all", "--params", help="flatness: all | top | name pattern"),
    radius_tol: float = typer.Option(1e-3, "--radius-tol", help="flatness: relative bisection tolerance"),
    examples: int | None = typer.Option(None, "--examples", help="noise: examples for D (default <= 500)"),
    batch_sizes: str = typer.Option("1,10,100", "--batch-sizes", help="noise: comma-separated batch sizes"),
    components: int = typer.Option(5, "--components", help="noise: gradient components to test"),
    samples: int = typer.Option(1000, "--samples", help="noise: minibatches per batch size"),
    gammas: str = typer.Option("0,0.01,0.05,0.1,0.5,1", "--gammas", help="margins: input-noise levels"),
    repeats: int = typer.Option(1, "--repeats", help="margins: noise draws per gamma"),
    rho: float | None = typer.Option(None, "--rho", help="adaptive-sharpness: radius [0.05]"),
    kind: str = typer.Option("worst", "--kind", help="adaptive-sharpness: worst | average"),
    norm: str = typer.Option("2", "--norm", help="adaptive-sharpness: 2 | inf"),
    adaptive: bool = typer.Option(True, "--adaptive/--standard", help="adaptive-sharpness: c = |w| or c = 1"),
    m: int | None = typer.Option(None, "--m", help="adaptive-sharpness: examples per batch (m-sharpness)"),
    subspace: int | None = typer.Option(None, "--subspace", help="epsilon-sharpness: random subspace dim"),
    ascent_steps: int = typer.Option(20, "--ascent-steps", help="epsilon/adaptive-sharpness: ascent steps"),
    optimizer_state: str | None = typer.Option(
        None, "--optimizer-state", help="preconditioned-sharpness: [RUN/checkpoints/final.optim.pt]"
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Measure a trained run: sharpness, spectrum, trace, non-uniformity or SGD stability (Wu et al. 2018)."""
    options = dict(
        run=run, lr=lr, batch_size=batch_size, n=n, split=split, tol=tol, max_iter=max_iter, method=method,
        matvecs=matvecs, trace_method=trace_method, k=k, steps=steps, runs=runs, threshold=threshold,
        chunk_size=chunk_size, seed=seed, eps=eps, directions=directions, params=params,
        radius_tol=radius_tol, examples=examples, batch_sizes=_numbers(batch_sizes, int),
        components=components, samples=samples, gammas=_numbers(gammas, float), repeats=repeats,
        rho=rho, kind=kind, norm=norm, adaptive=adaptive, m=m, subspace=subspace, ascent_steps=ascent_steps,
        optimizer_state=optimizer_state,
    )  # fmt: skip
    result, path = run_measurement(what, options)
    _print(what, result, path)


def _numbers(text: str, kind: type) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {text!r}") from None


def register(app: typer.Typer) -> None:
    app.command("measure")(measure)
