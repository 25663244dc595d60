"""Landscape, gradient-noise and margin probes for ``flatminima measure WHAT --run DIR``.

``PROBES[name](run, options) -> dict`` with ``run`` a ``flatminima.training.LoadedRun`` (anything with
``.objective(split=, chunk_size=)``, ``.model``, ``.dataset`` and ``.config`` works) and ``options`` the
measure command's options; missing keys take the defaults below, so the probes run from any caller.

* ``flatness``: mean flatness radius (Theory IIb eq. 11). Options: eps [0.05], directions [20], params ["all"
  | "top" | pattern], radius_tol [1e-3], seed.
* ``noise``: diffusion-matrix spectrum (rank, mean/std of eigenvalues, architecture score; thesis Sec. 6.3),
  temperatures eta/(2b) with and without replacement (lr / batch_size from the options, else the run's last
  phase), and the normality of minibatch-gradient components. Options: examples [min(n, 500)], batch_sizes
  [those of (1, 10, 100) at most ``examples``; given sizes above it are an error], components [5], samples
  [1000], seed. With ``run`` (the run directory) in the options, the
  histograms and the spectrum are drawn to ``RUN/measure-noise-histograms.png`` / ``-spectrum.png``.
* ``margins``: functional margins, L2 / fan-in l1 / path norms and the input-perturbation error (Theory III,
  eq. 47). Options: gammas [(0, 0.01, 0.05, 0.1, 0.5, 1)], repeats [1], seed.

All take ``split`` ["train"], ``n`` (first n examples) and ``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..objective import Objective

__all__ = ["PROBES", "flatness_probe", "margins_probe", "noise_probe", "objective_from_options"]


def objective_from_options(run: Any, o: dict[str, Any]) -> Objective:
    """The run's Objective on ``split`` (default train), its first ``n`` examples when given; with
    ``world_size`` > 1 (a torchrun launch) this process's shard of them."""
    obj = run.objective(split=o.get("split") or "train", chunk_size=o.get("chunk_size"))
    n = o.get("n")
    if n is not None:
        if not 1 <= int(n) <= obj.n:
            raise ConfigError(f"n must be in [1, {obj.n}], got {n}")
        obj = obj.subset(list(range(int(n))))
    if int(o.get("world_size") or 1) > 1:  # under torchrun: this process's shard (cli/measure.py)
        obj = obj.shard()
    return obj


def _get(o: dict[str, Any], key: str, default: Any) -> Any:
    value = o.get(key)
    return default if value is None else value


def flatness_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """Mean flatness radius over random unit directions (Theory IIb, eq. 11)."""
    from ..landscape import flatness_radius

    est = flatness_radius(
        objective_from_options(run, o),
        eps=float(_get(o, "eps", 0.05)),
        directions=int(_get(o, "directions", 20)),
        params=_get(o, "params", "all"),
        seed=int(_get(o, "seed", 0)),
        tol=float(_get(o, "radius_tol", 1e-3)),
    )
    return est.to_dict()


def _last_phase(run: Any) -> Any:
    phases = getattr(getattr(run, "config", None), "phases", None) or [None]
    return phases[-1]


def noise_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """Diffusion-matrix spectrum, SGD temperature and minibatch-gradient normality (thesis Sec. 6.3)."""
    from ..noise import diffusion_spectrum, gradient_noise, temperature

    obj = objective_from_options(run, o)
    seed = int(_get(o, "seed", 0))
    examples = int(_get(o, "examples", min(obj.n, 500)))
    spec = diffusion_spectrum(obj, examples=examples, seed=seed)
    phase = _last_phase(run)
    lr = _get(o, "lr", getattr(phase, "lr", None))
    batch = _get(o, "batch_size", getattr(phase, "batch_size", None))
    temps: dict[str, float | None] = {"with_replacement": None, "without_replacement": None}
    if lr is not None and batch is not None:
        b = min(int(batch), obj.n)
        temps = {
            "with_replacement": temperature(float(lr), b),
            "without_replacement": temperature(float(lr), b, n=obj.n, replacement=False),
        }
    population = min(obj.n, examples)
    if o.get("batch_sizes") is None:  # the defaults that fit the population
        sizes = [b for b in (1, 10, 100) if b <= population]
    else:
        sizes = [int(b) for b in o["batch_sizes"]]
        if max(sizes) > population:
            raise ConfigError(f"batch sizes must be at most the {population} examples used, got {sizes}")
    stats = gradient_noise(
        obj,
        batch_sizes=sizes,
        components=_get(o, "components", 5),
        samples=int(_get(o, "samples", 1000)),
        examples=examples,
        seed=seed,
    )
    plots = {}
    if o.get("run"):
        from ..noise import plot_diffusion_spectrum, plot_gradient_histograms

        folder = Path(o["run"])
        plots = {
            "histograms": str(plot_gradient_histograms(stats, folder / "measure-noise-histograms.png")),
            "spectrum": str(plot_diffusion_spectrum(spec, folder / "measure-noise-spectrum.png")),
        }
    return {
        "plots": plots,
        "diffusion": spec.to_dict(with_eigenvalues=True),
        "lr": lr,
        "batch_size": batch,
        "temperature": temps,
        "gradient_components": [s.to_dict() for s in stats],
    }


def margins_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """Margins, norms and input-perturbation error (Theory III, Figs. 16-17 and eq. 47)."""
    from ..generalization import fan_in_l1_norms, l2_norm, margins, path_norm, perturbation_error

    obj = objective_from_options(run, o)
    model = obj.model
    try:
        pn: float | None = path_norm(model, tuple(obj.x.shape[1:]))
        pn_note = None
    except ConfigError as exc:
        pn, pn_note = None, str(exc)
    gammas = _get(o, "gammas", (0.0, 0.01, 0.05, 0.1, 0.5, 1.0))
    curve = perturbation_error(obj, gammas, repeats=int(_get(o, "repeats", 1)), seed=int(_get(o, "seed", 0)))
    return {
        "margins": margins(obj).to_dict(),
        "l2_norm": l2_norm(model),
        "fan_in_l1": fan_in_l1_norms(model),
        "path_norm": pn,
        "path_norm_note": pn_note,
        "perturbation": curve.to_dict(),
    }


PROBES: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "flatness": flatness_probe,
    "noise": noise_probe,
    "margins": margins_probe,
}
