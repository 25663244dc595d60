"""Sharpness measures of the post-2017 literature for ``flatminima measure WHAT --run DIR``.

``SHARPNESS[name](run, options) -> dict`` (merged into the measure command's table by ``measure.py``), like
``measure_probes.PROBES``; missing option keys take the defaults below, so they run from any caller.

* ``epsilon-sharpness``: Keskar et al. 2017, eq. 4. Options: eps [1e-3], subspace [None: full space; p: a
  random n x p subspace, the paper's p = 100], ascent_steps [20], seed.
* ``adaptive-sharpness``: Andriushchenko et al. 2023. Options: rho [0.05], kind ["worst" | "average"],
  norm ["2" | "inf"], adaptive [True: c = |w|], m [None: all examples in one batch], ascent_steps [20],
  samples [10: Gaussian draws per batch for the average case; the CLI passes --samples, default 1000], seed.
* ``preconditioned-sharpness``: lambda_max(P^{-1} H) of the run's final Adam/RMSprop state and its stability
  verdict (Cohen et al. 2022). Options: optimizer_state [RUN/checkpoints/final.optim.pt, written by the
  trainer], lr [the state's], tol, max_iter, seed.
* ``noise-scale``: B_simple = tr(Sigma) / |G|^2 with its jackknife s.e. (McCandlish et al. 2018). Options:
  examples [min(n, 1000)], seed.

All take ``split`` ["train"], ``n`` (first n examples) and ``chunk_size``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from .measure_probes import objective_from_options

__all__ = [
    "OPTIMIZER_STATE",
    "SHARPNESS",
    "adaptive_sharpness_probe",
    "epsilon_sharpness_probe",
    "load_optimizer_state",
    "noise_scale_probe",
    "preconditioned_sharpness_probe",
]

#: Where ``fm.train`` saves the final optimizer state (``torch.save(optimizer.state_dict())``).
OPTIMIZER_STATE = Path("checkpoints") / "final.optim.pt"


def _get(o: dict[str, Any], key: str, default: Any) -> Any:
    value = o.get(key)
    return default if value is None else value


def _result(est: Any) -> dict[str, Any]:
    from .measure import _estimate_dict  # late: measure.py imports this module

    return _estimate_dict(est)


def epsilon_sharpness_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """Keskar et al. 2017's eps-sharpness (full space, or a random subspace of dimension ``subspace``)."""
    from ..landscape import epsilon_sharpness

    subspace = o.get("subspace") or None
    est = epsilon_sharpness(
        objective_from_options(run, o),
        eps=float(_get(o, "eps", 1e-3)),
        subspace=None if subspace is None else int(subspace),
        steps=int(_get(o, "ascent_steps", 20)),
        seed=int(_get(o, "seed", 0)),
    )
    return _result(est)


def adaptive_sharpness_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """Andriushchenko et al. 2023's worst-case / average-case (adaptive) m-sharpness."""
    from ..landscape import adaptive_sharpness

    m = o.get("m")
    est = adaptive_sharpness(
        objective_from_options(run, o),
        rho=float(_get(o, "rho", 0.05)),
        kind=_get(o, "kind", "worst"),
        norm=_get(o, "norm", "2"),
        adaptive=bool(_get(o, "adaptive", True)),
        m=None if m is None else int(m),
        steps=int(_get(o, "ascent_steps", 20)),
        samples=int(_get(o, "samples", 10)),
        seed=int(_get(o, "seed", 0)),
    )
    return _result(est)


def load_optimizer_state(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` of an optimizer ``state_dict``; CheckpointError when the file
    is missing, unreadable or not an optimizer state."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no optimizer state at {path} (fm.train saves it as RUN/{OPTIMIZER_STATE.as_posix()}; "
            "pass --optimizer-state PATH)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle refused by weights_only, ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"cannot read the optimizer state {path}: {first}") from None
    if not isinstance(state, dict) or "state" not in state or "param_groups" not in state:
        raise CheckpointError(f"{path} is not an optimizer state_dict (no 'state' / 'param_groups')")
    return state


def preconditioned_sharpness_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """lambda_max(P^{-1} H) of the run's final Adam/RMSprop state and the verdict against its threshold."""
    from ..curvature import preconditioned_sharpness

    path = o.get("optimizer_state")
    if path is None:
        path = Path(o.get("run") or ".") / OPTIMIZER_STATE
    state = load_optimizer_state(path)
    est = preconditioned_sharpness(
        objective_from_options(run, o),
        state,
        lr=o.get("lr"),
        tol=float(_get(o, "tol", 1e-4)),
        max_iter=int(_get(o, "max_iter", 100)),
        seed=int(_get(o, "seed", 0)),
    )
    out = _result(est)
    out["optimizer_state"] = str(path)
    return out


def noise_scale_probe(run: Any, o: dict[str, Any]) -> dict[str, Any]:
    """McCandlish et al. 2018's B_simple with its jackknife standard error."""
    from ..noise import noise_scale

    obj = objective_from_options(run, o)
    est = noise_scale(obj, examples=int(_get(o, "examples", min(obj.n, 1000))), seed=int(_get(o, "seed", 0)))
    return _result(est)


SHARPNESS: dict[str, Callable[[Any, dict[str, Any]], dict[str, Any]]] = {
    "epsilon-sharpness": epsilon_sharpness_probe,
    "adaptive-sharpness": adaptive_sharpness_probe,
    "preconditioned-sharpness": preconditioned_sharpness_probe,
    "noise-scale": noise_scale_probe,
}
