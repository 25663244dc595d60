"""``flatminima measure WHAT --run DIR``: curvature measurements on a trained run's final checkpoint.

WHAT: sharpness | spectrum | trace | nonuniformity | stability, plus any name in ``PROBES`` of
``flatminima.cli.measure_probes`` and ``SHARPNESS`` of ``flatminima.cli.measure_sharpness`` (dicts name ->
function(loaded_run, options: dict) -> dict). Every name of
:func:`measurements` is dispatched and listed in ``--help``: adding a measurement is one entry in a table.
The result is printed as a table and written to ``DIR/measure-<what>.json`` (temporary file, then rename).
``--n`` restricts to the first n training examples (Wu, Ma & E 2018 measure on n = 1000). ``stability`` takes
``--lr`` / ``--batch-size`` from the options, else from the run's last training phase.

Under ``torchrun --nproc-per-node N -m flatminima measure WHAT --run-dir DIR`` (``--run-dir`` is the spelling
of ``--run`` that passes through torchrun, whose own parser takes ``--run`` for its ``--run-path``) each
process joins the process group torchrun describes (gloo), takes a contiguous shard of the examples
(``Objective.shard``) and every product is summed over the processes; rank 0 prints and writes the JSON
(``options.world_size`` records N). Only the measurements of :data:`DISTRIBUTED` (sums over examples) run
this way; the others are refused with exit code 2.

Every option is checked before the run is loaded (:data:`CHECKS`: one validator per option; a measurement
that adds an option adds one line there), and so is the writability of the run directory, so a bad value
or a read-only directory never costs minutes of work. ``--help`` groups the options by measurement
(``rich_help_panel``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from .._io import atomic_write_json
from .._progress import progress_enabled
from .._validate import check_choice, check_float, check_int, check_seed, check_writable_dir, short
from ..errors import ConfigError, unknown
from ..objective.dist import is_main_process, process_group_from_env
from .measure_probes import PROBES, objective_from_options
from .measure_sharpness import SHARPNESS

__all__ = [
    "BUILTIN",
    "CHECKS",
    "DISTRIBUTED",
    "check_options",
    "measure",
    "measurements",
    "register",
    "run_measurement",
]

#: Measurements that run under torchrun (every product a sum over examples, see the module docstring).
DISTRIBUTED = ("sharpness", "spectrum", "trace", "nonuniformity", "stability", "flatness")


def _load_run(path: str):
    from ..training import load_run

    return load_run(path)


def _announce(what: str, o: dict[str, Any]) -> None:
    """From the command line (``progress`` among the options): the work ahead, once the options that need
    the run (batch size, k) have been checked, so a bad input still gets exactly one line."""
    if "progress" in o:
        Console(stderr=True).print(f"{what}: up to {PRODUCTS[what](o)} curvature products")


def _sharpness(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import sharpness

    obj = objective_from_options(run, o)
    _announce("sharpness", o)
    est = sharpness(obj, tol=o["tol"], max_iter=o["max_iter"], seed=o["seed"], progress=o.get("progress"))
    return _estimate_dict(est)


def _trace(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import hessian_trace

    obj = objective_from_options(run, o)
    _announce("trace", o)
    est = hessian_trace(
        obj, matvecs=o["matvecs"], method=o["trace_method"], seed=o["seed"], progress=o.get("progress")
    )
    return _estimate_dict(est)


def _nonuniformity(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import non_uniformity

    obj = objective_from_options(run, o)
    _announce("nonuniformity", o)
    est = non_uniformity(
        obj, method=o["method"], tol=o["tol"], max_iter=o["max_iter"], seed=o["seed"],
        progress=o.get("progress"),
    )  # fmt: skip
    return _estimate_dict(est)


def _spectrum(run, o: dict[str, Any]) -> dict[str, Any]:
    from ..curvature import hessian_eigenvalues, plot_density, spectrum_summary

    obj = objective_from_options(run, o)
    if o["k"] > obj.num_params:  # before the SLQ runs, not after them
        raise ConfigError(f"--k {o['k']} exceeds the {obj.num_params} parameters measured")
    _announce("spectrum", o)
    top = hessian_eigenvalues(obj, k=o["k"], tol=o["tol"], seed=o["seed"])
    summary = spectrum_summary(
        obj, threshold=o["threshold"], steps=o["steps"], runs=o["runs"], tol=o["tol"], seed=o["seed"],
        progress=o.get("progress"),
    )  # fmt: skip
    png = Path(o["run"]) / "measure-spectrum.png"
    if is_main_process():  # under torchrun rank 0 draws
        png = plot_density(summary.density, png)
    d = summary.to_dict()
    return {
        "near_zero_share": d["near_zero_share"],
        "near_zero_stderr": d["near_zero_stderr"],
        "threshold": d["threshold"],
        "top_eigenvalues": top.values,
        "top_residuals": top.residuals,
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
    given = batch is not None
    if batch is None:
        batch = getattr(phase, "batch_size", None) or obj.n
    if int(batch) > obj.n:
        source = "--batch-size" if given else "the run's batch size"
        raise ConfigError(
            f"{source} {batch} exceeds the {obj.n} examples measured; pass a smaller --batch-size"
        )
    _announce("stability", o)
    st = linear_stability(
        obj, lr=lr, batch_size=batch, tol=o["tol"], max_iter=o["max_iter"], method=o["method"],
        seed=o["seed"], progress=o.get("progress"),
    )  # fmt: skip
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


def measurements() -> dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]]:
    """Every measurement of ``flatminima measure``: name -> function(loaded_run, options) -> dict."""
    return {**BUILTIN, **PROBES, **SHARPNESS}


def _count(name: str, value: Any) -> int:
    return check_int(name, value, ge=1)


def _fraction(name: str, value: Any) -> float:
    return check_float(name, value, gt=0, lt=1)


def _positive(name: str, value: Any) -> float:
    return check_float(name, value, gt=0)


def _batch_sizes(name: str, value: Any) -> list[int]:
    if not value:
        raise ConfigError(f"{name} must list at least one batch size")
    return [_count(f"each of {name}", b) for b in value]


def _gammas(name: str, value: Any) -> list[float]:
    if not value:
        raise ConfigError(f"{name} must list at least one noise level")
    return [check_float(f"each of {name}", g, ge=0) for g in value]


def _solver_method(name: str, value: Any) -> str:
    from ..curvature.nonuniformity import METHODS

    return check_choice(f"{name} value", value, METHODS)


def _trace_method(name: str, value: Any) -> str:
    from ..curvature.trace import METHODS

    return check_choice(f"{name} value", value, METHODS)


# Option -> validator(flag, value) -> checked value; None (unset, the run's own value) is not checked.
CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "lr": _positive,
    "batch_size": _count,
    "n": _count,
    "split": lambda name, v: check_choice(f"{name} value", v, ("train", "test")),
    "chunk_size": _count,
    "seed": lambda name, v: check_seed(v, name),
    "tol": _fraction,
    "max_iter": _count,
    "method": _solver_method,
    "matvecs": _count,
    "trace_method": _trace_method,
    "k": _count,
    "steps": _count,
    "runs": _count,
    "threshold": _positive,
    "eps": _positive,
    "directions": _count,
    "radius_tol": _fraction,
    "examples": lambda name, v: check_int(name, v, ge=2),
    "batch_sizes": _batch_sizes,
    "components": _count,
    "samples": lambda name, v: check_int(name, v, ge=2),
    "gammas": _gammas,
    "repeats": _count,
    "rho": _positive,
    "kind": lambda name, v: check_choice(f"{name} value", v, ("worst", "average")),
    "norm": lambda name, v: check_choice(f"{name} value", v, ("2", "inf")),
    "m": _count,
    "subspace": _count,
    "ascent_steps": _count,
}


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options with every set value validated by :data:`CHECKS` (ConfigError naming the option)."""
    checked = dict(options)
    for key, check in CHECKS.items():
        if checked.get(key) is not None:
            checked[key] = check(f"--{key.replace('_', '-')}", checked[key])
    return checked


def run_measurement(what: str, options: dict[str, Any]) -> tuple[dict[str, Any], Path | None]:
    """Measure ``what`` on the run ``options["run"]``; returns the result and the JSON path written (None on
    the ranks > 0 of a torchrun launch, which write nothing).

    The name, every option and the run directory's writability are checked before the run is loaded.
    """
    table = measurements()
    if what not in table:
        raise unknown("measurement", what, list(table))
    options = check_options(options)
    with process_group_from_env() as group:
        if group is not None:
            import torch.distributed as td

            if what not in DISTRIBUTED:
                raise ConfigError(
                    f"measure {what} does not run distributed (it reads individual examples); run it without "
                    f"torchrun. Distributed: {', '.join(DISTRIBUTED)}"
                )
            options["world_size"] = td.get_world_size(group)
            if not is_main_process():
                options.pop("progress", None)  # one bar and one announcement, from rank 0
        folder = Path(options["run"])
        if folder.is_dir():
            check_writable_dir(folder, "run directory")
            target = folder / f"measure-{what}.json"
            if target.exists() and not target.is_file():
                raise ConfigError(f"{target} exists and is not a file; move it away")
        run = _load_run(options["run"])
        result = table[what](run, options)
        if not is_main_process():
            return result, None
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


_RUN, _SOLVER, _STABILITY = (
    "Run and data",
    "Eigensolvers (sharpness, spectrum, nonuniformity, stability)",
    "stability",
)
_TRACE, _SPECTRUM, _FLATNESS, _NOISE, _MARGINS = "trace", "spectrum", "flatness", "noise", "margins"
_SHARP = "Post-2017 sharpness (epsilon, adaptive, preconditioned)"


def _what_help() -> str:
    return "one of: " + ", ".join(measurements())


def measure(
    what: str = typer.Argument(..., help=_what_help(), show_default=False),
    run: str = typer.Option(
        ...,
        "--run",
        "--run-dir",
        help="run directory (written by flatminima train); --run-dir passes through torchrun",
        rich_help_panel=_RUN,
    ),
    n: int | None = typer.Option(None, "--n", help="use the first n training examples", rich_help_panel=_RUN),
    split: str = typer.Option("train", "--split", help="train | test", rich_help_panel=_RUN),
    chunk_size: int | None = typer.Option(
        None, "--chunk-size", help="examples per chunk", rich_help_panel=_RUN
    ),
    seed: int = typer.Option(0, "--seed", help="seed of random probes and directions", rich_help_panel=_RUN),
    tol: float = typer.Option(
        1e-4, "--tol", help="relative eigen-residual tolerance", rich_help_panel=_SOLVER
    ),
    max_iter: int = typer.Option(100, "--max-iter", help="most Lanczos products", rich_help_panel=_SOLVER),
    method: str = typer.Option(
        "auto", "--method", help="non-uniformity / stability: auto | exact | ggn", rich_help_panel=_SOLVER
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="learning rate (default: the run's)", rich_help_panel=_STABILITY
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="batch size (default: the run's)", rich_help_panel=_STABILITY
    ),
    matvecs: int = typer.Option(100, "--matvecs", help="Hessian-vector products", rich_help_panel=_TRACE),
    trace_method: str = typer.Option(
        "hutch++", "--trace-method", help="hutch++ | hutchinson", rich_help_panel=_TRACE
    ),
    k: int = typer.Option(5, "--k", help="number of top eigenvalues", rich_help_panel=_SPECTRUM),
    steps: int = typer.Option(80, "--steps", help="Lanczos steps per SLQ run", rich_help_panel=_SPECTRUM),
    runs: int = typer.Option(3, "--runs", help="SLQ runs", rich_help_panel=_SPECTRUM),
    threshold: float = typer.Option(
        1e-4, "--threshold", help="|lambda| below this counts as ~0", rich_help_panel=_SPECTRUM
    ),
    eps: float | None = typer.Option(
        None,
        "--eps",
        help="flatness: loss tolerance of the radius (eq. 11) [0.05]; epsilon-sharpness: box size [1e-3]",
        rich_help_panel=_FLATNESS,
    ),
    directions: int = typer.Option(20, "--directions", help="random directions", rich_help_panel=_FLATNESS),
    params: str = typer.Option("all", "--params", help="all | top | name pattern", rich_help_panel=_FLATNESS),
    radius_tol: float = typer.Option(
        1e-3, "--radius-tol", help="relative bisection tolerance", rich_help_panel=_FLATNESS
    ),
    examples: int | None = typer.Option(
        None, "--examples", help="examples for D (default <= 500)", rich_help_panel=_NOISE
    ),
    batch_sizes: str | None = typer.Option(
        None,
        "--batch-sizes",
        help="comma-separated batch sizes (default: those of 1,10,100 that fit)",
        rich_help_panel=_NOISE,
    ),
    components: int = typer.Option(
        5, "--components", help="gradient components to test", rich_help_panel=_NOISE
    ),
    samples: int = typer.Option(1000, "--samples", help="minibatches per batch size", rich_help_panel=_NOISE),
    gammas: str = typer.Option(
        "0,0.01,0.05,0.1,0.5,1", "--gammas", help="input-noise levels", rich_help_panel=_MARGINS
    ),
    repeats: int = typer.Option(1, "--repeats", help="noise draws per gamma", rich_help_panel=_MARGINS),
    rho: float | None = typer.Option(None, "--rho", help="radius [0.05]", rich_help_panel=_SHARP),
    kind: str = typer.Option("worst", "--kind", help="worst | average", rich_help_panel=_SHARP),
    norm: str = typer.Option("2", "--norm", help="2 | inf", rich_help_panel=_SHARP),
    adaptive: bool = typer.Option(
        True, "--adaptive/--standard", help="c = |w| or c = 1", rich_help_panel=_SHARP
    ),
    m: int | None = typer.Option(
        None, "--m", help="examples per batch (m-sharpness)", rich_help_panel=_SHARP
    ),
    subspace: int | None = typer.Option(
        None, "--subspace", help="epsilon-sharpness: random subspace dimension", rich_help_panel=_SHARP
    ),
    ascent_steps: int = typer.Option(
        20, "--ascent-steps", help="epsilon / adaptive sharpness: ascent steps", rich_help_panel=_SHARP
    ),
    optimizer_state: str | None = typer.Option(
        None,
        "--optimizer-state",
        help="preconditioned-sharpness: optimizer state [RUN/checkpoints/final.optim.pt]",
        rich_help_panel=_SHARP,
    ),
) -> None:
    """Measure a trained run: curvature (Wu, Ma & E 2018), flatness, gradient noise or margins; WHAT names
    the measurement, the option groups below say which measurement reads which option."""
    options = dict(
        run=run, lr=lr, batch_size=batch_size, n=n, split=split, tol=tol, max_iter=max_iter, method=method,
        matvecs=matvecs, trace_method=trace_method, k=k, steps=steps, runs=runs, threshold=threshold,
        chunk_size=chunk_size, seed=seed, eps=eps, directions=directions, params=params,
        radius_tol=radius_tol, examples=examples,
        batch_sizes=None if batch_sizes is None else _numbers(batch_sizes, int),
        components=components, samples=samples, gammas=_numbers(gammas, float), repeats=repeats,
        rho=rho, kind=kind, norm=norm, adaptive=adaptive, m=m, subspace=subspace, ascent_steps=ascent_steps,
        optimizer_state=optimizer_state,
    )  # fmt: skip
    options["progress"] = progress_enabled()  # a bar on a terminal; also: announce the products
    result, path = run_measurement(what, options)
    if path is not None:
        _print(what, result, path)


#: Upper bounds on the products of each built-in measurement (printed before the work starts).
PRODUCTS: dict[str, Callable[[dict[str, Any]], int]] = {
    "sharpness": lambda o: o["max_iter"],
    "trace": lambda o: o["matvecs"],
    "nonuniformity": lambda o: o["max_iter"] + 1,
    "spectrum": lambda o: o["steps"] * o["runs"] + 3 * max(100, 4 * o["k"]),
    "stability": lambda o: 4 * o["max_iter"],
}


def _numbers(text: str, kind: type) -> list:
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated numbers, got {short(text)}") from None


def register(app: typer.Typer) -> None:
    app.command("measure")(measure)
