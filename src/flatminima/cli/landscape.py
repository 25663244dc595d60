"""``flatminima landscape slice|simplex|mds``: loss-landscape pictures of trained runs.

* ``slice --run DIR``: 2-D (``--dims 2``) or 1-D slice about the run's final weights along filter-normalized
  random directions (Li et al. 2018), the top Hessian eigenvectors (``--directions hessian``) or the PCA
  directions of the run's step-N checkpoints (``--directions pca``, trajectory drawn on the contours). With
  two ``--run``: the 1-D interpolation (1 - alpha) w_1 + alpha w_2 (``--bn-recompute`` re-estimates BatchNorm
  statistics at every point). The grid is stored in ``OUT/slice.npz`` row by row: re-running the same command
  resumes.
* ``simplex --run A --run B --run C``: training loss/accuracy over the simplex of three runs (Theory IIb eq.
  10).
* ``mds --run DIR [--run ...]``: classical MDS of the runs' checkpoint trajectories (Theory II Sec. 4.1), each
  point labelled with its training error.

Each writes PNG + JSON into ``--out``. Models and data are rebuilt with ``flatminima.training.load_run``; all
runs of one command must share the architecture and data. Every option, the writability of ``--out`` and the
size of the grid (its memory; for large grids also its time, from a few timed points) are checked before the
runs are loaded, so a bad value fails in a second with one line rather than after minutes or with a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from .._validate import check_choice, check_float, check_int, check_seed, check_writable_dir
from ..errors import ConfigError, unknown
from .measure_probes import objective_from_options

__all__ = ["app", "register"]

app = typer.Typer(
    help="Loss-landscape slices, simplex interpolation and MDS of trajectories.", no_args_is_help=True
)

DIRECTIONS = ("random", "hessian", "pca")


def _load_run(path: str) -> Any:
    from ..training import load_run

    return load_run(path)


def _theta_of(obj, run: Any) -> torch.Tensor:
    sd = dict(run.model.state_dict())
    return obj.flatten({k: sd[k] for k in obj.param_names}).to(obj.device, obj.dtype)


def _trajectory(obj, run: Any) -> tuple[list[int], torch.Tensor]:
    """Flat weights of the run's step-N checkpoints followed by its final weights (unless already last)."""
    from ..training import read_checkpoint

    steps, rows = [], []
    for path in run.checkpoints():
        sd = read_checkpoint(path)
        rows.append(obj.flatten({k: sd[k] for k in obj.param_names}).to(obj.device, obj.dtype))
        steps.append(int(path.stem.split("-", 1)[1]))
    final = _theta_of(obj, run)
    if not rows or not torch.equal(rows[-1], final):  # the last step-N checkpoint is often the final one
        rows.append(final)
        steps.append(int(getattr(run, "summary", {}).get("steps", steps[-1] + 1 if steps else 0) or 0))
    return steps, torch.stack(rows)


def _run_names(runs: list[str]) -> list[str]:
    """Short names of the runs for plots: the folder names, or the paths when folder names repeat."""
    short = [Path(r).name or str(r) for r in runs]
    return short if len(set(short)) == len(short) else [str(r) for r in runs]


def _check_common(out: Path, n: int | None, chunk_size: int | None) -> None:
    """Options every landscape command shares, and the output folder (created or written, not a file)."""
    if n is not None:
        check_int("--n", n, ge=1)
    if chunk_size is not None:
        check_int("--chunk-size", chunk_size, ge=1)
    check_writable_dir(out, "--out folder")


def _write(out: Path, name: str, payload: dict[str, Any]) -> Path:
    from .._io import atomic_write_json

    path = out / f"{name}.json"
    atomic_write_json(path, payload)
    return path


@app.command("slice")
def slice_cmd(
    run: list[str] = typer.Option(..., "--run", help="run directory; two for an interpolation"),
    out: Path = typer.Option(..., "--out", help="output folder (PNG + JSON + resumable slice.npz)"),
    dims: int = typer.Option(2, "--dims", help="1 or 2"),
    directions: str = typer.Option("random", "--directions", help="random | hessian | pca"),
    points: int = typer.Option(51, "--points", help="grid points per axis"),
    extent: float = typer.Option(1.0, "--range", help="coordinates in [-range, range] (pca: auto)"),
    norm: str = typer.Option("filter", "--norm", help="random directions: filter | layer | none"),
    bias_bn: str = typer.Option("zero", "--bias-bn", help="random directions on biases/BN: zero | weights"),
    bn_recompute: bool = typer.Option(False, "--bn-recompute", help="interpolation: recompute BN statistics"),
    n: int | None = typer.Option(None, "--n", help="use the first n training examples"),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="examples per chunk"),
    batch_points: int = typer.Option(
        16, "--batch-points", help="grid points per batched evaluation (Linear layers on CPU stream instead)"
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Loss slice about a run's weights, or the interpolation between two runs."""
    from ..landscape import (
        hessian_directions,
        interpolate,
        pca_directions,
        plot_slice,
        plot_surface,
        random_directions,
        slice_1d,
        slice_2d,
    )
    from ..landscape.budget import check_grid_size
    from ..landscape.directions import BIAS_BN, NORMS

    if len(run) not in (1, 2):
        raise ConfigError("slice takes one --run (a slice) or two (an interpolation)")
    if dims not in (1, 2):
        raise ConfigError(f"--dims must be 1 or 2, got {dims}")
    check_int("--points", points, ge=2)
    if directions not in DIRECTIONS:
        raise unknown("slice directions", directions, DIRECTIONS)
    check_float("--range", extent, gt=0)
    check_choice("--norm value", norm, NORMS)
    check_choice("--bias-bn value", bias_bn, BIAS_BN)
    check_int("--batch-points", batch_points, ge=1)
    check_seed(seed, "--seed")
    _check_common(out, n, chunk_size)
    shape = [points] * (1 if len(run) == 2 else dims)
    check_grid_size(shape, f"a {' x '.join(map(str, shape))} slice")
    first = _load_run(run[0])
    obj = objective_from_options(first, {"n": n, "chunk_size": chunk_size})
    store = out / "slice.npz"
    names = _run_names(run)
    if len(run) == 2:
        other = _theta_of(obj, _load_run(run[1]))
        alphas = np.linspace(-0.5, 1.5, points)
        s = interpolate(obj, obj.theta, other, alphas, bn_recompute=bn_recompute, store=None if bn_recompute
                        else store, batch_points=batch_points, names=(names[0], names[1]))  # fmt: skip
    else:
        path = None
        origin = obj.theta
        meta: dict[str, Any] = {"centre": f"final weights of {names[0]}"}
        if directions == "random":
            d = random_directions(obj, dims, seed=seed, norm=norm, bias_bn=bias_bn)
            meta.update(norm=norm, bias_bn=bias_bn, seed=seed)
        elif directions == "hessian":
            values, d = hessian_directions(obj, dims, seed=seed)
            meta["eigenvalues"] = [float(v) for v in values]
        else:
            _, traj = _trajectory(obj, first)
            if len(traj) < dims + 1:
                raise ConfigError("pca directions need step-N checkpoints (train with checkpoint_every)")
            pca = pca_directions(traj, k=dims)
            d, origin, path = pca.directions, pca.origin, pca.path
            extent = float(np.abs(path).max() * 1.2) or extent
            meta["explained"] = [float(v) for v in pca.explained]
        xs = np.linspace(-extent, extent, points)
        if dims == 1:
            s = slice_1d(obj, d[0], xs, origin=origin, store=store, batch_points=batch_points,
                         kind=directions, meta=meta)  # fmt: skip
        else:
            s = slice_2d(obj, d[0], d[1], xs, xs, origin=origin, store=store, batch_points=batch_points,
                         kind=directions, path=path, meta=meta)  # fmt: skip
    s.meta["runs"] = [str(r) for r in run]
    pngs = [plot_slice(s, out / "slice.png")]
    if s.dims == 2:
        pngs.append(plot_surface(s, out / "slice-surface.png"))
    written = _write(out, "slice", s.to_dict())
    typer.echo(f"written: {written}, " + ", ".join(str(p) for p in pngs))


@app.command("simplex")
def simplex_cmd(
    run: list[str] = typer.Option(..., "--run", help="three run directories"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    resolution: int = typer.Option(20, "--resolution", help="grid points per edge - 1"),
    what: str = typer.Option("accuracy", "--what", help="plotted quantity: accuracy | loss"),
    n: int | None = typer.Option(None, "--n", help="use the first n training examples"),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="examples per chunk"),
) -> None:
    """Training loss/accuracy over w = l1 w1 + l2 w2 + l3 w3 on the simplex (Theory IIb eq. 10)."""
    from ..landscape import plot_simplex, simplex_interpolation
    from ..landscape.simplex import simplex_grid

    if len(run) != 3:
        raise ConfigError(f"simplex needs exactly three --run, got {len(run)}")
    if what not in ("accuracy", "loss"):
        raise unknown("simplex quantity", what, ("accuracy", "loss"))
    check_int("--resolution", resolution, ge=1)
    _check_common(out, n, chunk_size)
    simplex_grid(resolution)  # its memory is checked before the grid is built
    runs = [_load_run(r) for r in run]
    obj = objective_from_options(runs[0], {"n": n, "chunk_size": chunk_size})
    res = simplex_interpolation(obj, [_theta_of(obj, r) for r in runs], resolution=resolution)
    png = plot_simplex(res, out / "simplex.png", what=what)
    written = _write(out, "simplex", {"runs": list(run), **res.to_dict()})
    typer.echo(f"written: {written}, {png}")


@app.command("mds")
def mds_cmd(
    run: list[str] = typer.Option(..., "--run", help="run directories (their step-N checkpoints)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    metric: str = typer.Option("cosine", "--metric", help="cosine (1 - cos, Theory II) | euclidean"),
    params: str | None = typer.Option(None, "--params", help="parameter name pattern (e.g. one layer)"),
    n: int | None = typer.Option(None, "--n", help="use the first n training examples for the errors"),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help="examples per chunk"),
) -> None:
    """Classical MDS of checkpoint trajectories, each point labelled with its training error."""
    from ..landscape import evaluate_points, plot_mds, trajectory_mds
    from ..landscape.mds import METRICS

    check_choice("--metric value", metric, METRICS)
    _check_common(out, n, chunk_size)
    rows, groups, steps, errors = [], [], [], []
    obj = None
    for r in run:
        loaded = _load_run(r)
        obj = objective_from_options(loaded, {"n": n, "chunk_size": chunk_size})
        st, traj = _trajectory(obj, loaded)
        _, acc = evaluate_points(obj, traj)
        errors += (1.0 - acc).tolist()
        rows.append(traj)
        groups += [str(r)] * len(traj)
        steps += st
    weights = torch.cat(rows)
    if params is not None and obj is not None:
        from ..landscape import selection_mask

        weights = weights[:, selection_mask(obj, params)]
    if len(weights) < 3:
        raise ConfigError("mds needs at least three recorded weight vectors (train with checkpoint_every)")
    res = trajectory_mds(weights, metric=metric)
    png = plot_mds(res, out / "mds.png", errors=errors, groups=groups)
    payload = {
        "runs": list(run), "metric": metric, "params": params, "coords": res.coords, "steps": steps,
        "groups": groups, "errors": errors, "eigenvalues": res.eigenvalues, "explained": res.explained,
    }  # fmt: skip
    written = _write(out, "mds", payload)
    typer.echo(f"written: {written}, {png}")


def register(root: typer.Typer) -> None:
    """Add ``flatminima landscape ...`` to the root app."""
    root.add_typer(app, name="landscape")
