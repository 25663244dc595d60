"""epsilon-sharpness of Keskar, Mudigere, Nocedal, Smelyanskiy & Tang 2017 (ICLR), Metric 2.1, eq. 3-4.

For the training loss f at x, a box size eps and an n x p matrix A,

    C_eps = { z in R^p : |z_i| <= eps (|(A^+ x)_i| + 1) },                                   (eq. 3)
    phi_{x,f}(eps, A) = 100 (max_{y in C_eps} f(x + A y) - f(x)) / (1 + f(x)),                 (eq. 4)

with A^+ the pseudo-inverse. A = I (``subspace=None``) is the full space: the box |delta_j| <= eps (|x_j| + 1)
around every weight. A random n x p matrix (``subspace=p``, the paper's p = 100) probes a random p-dimensional
subspace. The paper maximises with L-BFGS-B (10 iterations); here projected gradient ascent on the box
(:mod:`._ascent`; scipy's L-BFGS-B is the independent reference in the tests).

Decisions where the paper is silent: the random A has i.i.d. N(0, 1/p) entries (so each coordinate of A z, for
z a vertex of the unit cube, has unit variance, like the full-space box; the paper says only "randomly
generated"); pass ``subspace=`` a tensor to use your own A. A^+ x is the least-squares solution of A y = x.
The loss f is the objective's (the training loss on its data; Keskar et al. measure on the training set).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..errors import ConfigError
from ..estimate import Estimate
from ..objective import Objective
from ._ascent import maximize_on_ball

__all__ = ["epsilon_sharpness", "keskar_normalization", "random_subspace"]


def keskar_normalization(max_loss: float, loss: float) -> float:
    """100 (max_loss - loss) / (1 + loss) (Keskar et al. 2017, eq. 4)."""
    return 100.0 * (max_loss - loss) / (1.0 + loss)


def random_subspace(num_params: int, dim: int, seed: int = 0) -> Tensor:
    """A random n x p matrix with i.i.d. N(0, 1/p) entries (float64, CPU), from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(num_params, dim, generator=g, dtype=torch.float64) / dim**0.5


def epsilon_sharpness(
    obj: Objective,
    eps: float = 1e-3,
    subspace: int | Tensor | None = None,
    steps: int = 20,
    restarts: int = 1,
    seed: int = 0,
) -> Estimate:
    """Keskar et al. 2017's sharpness phi_{x,f}(eps, A) (eq. 4) at the objective's base point.

    ``subspace``: None (A = I, full space), an int p (random n x p matrix, :func:`random_subspace` from
    ``seed``) or an explicit ``[n, p]`` tensor. ``steps`` / ``restarts``: projected gradient ascent on the box
    (best iterate kept; the value is a lower bound of the true maximum). ``value`` is phi (in percent of
    1 + f); ``extra`` holds ``max_loss``, ``loss``, the maximiser ``delta`` (a tensor), ``evaluations``
    (forward+backward passes over the data), ``eps``, ``subspace_dim``.
    """
    if not eps > 0:
        raise ConfigError(f"eps must be positive, got {eps!r}")
    start = time.perf_counter()
    x = obj.theta
    if subspace is None:
        radius = eps * (x.abs() + 1)
        dim = obj.num_params

        def apply(u: Tensor) -> Tensor:
            return radius * u

        def adjoint(g: Tensor) -> Tensor:
            return radius * g
    else:
        if isinstance(subspace, int) and (isinstance(subspace, bool) or subspace < 1):
            raise ConfigError(f"subspace must be a positive dimension or an [n, p] matrix, got {subspace!r}")
        a = random_subspace(obj.num_params, subspace, seed) if isinstance(subspace, int) else subspace
        if a.dim() != 2 or a.shape[0] != obj.num_params:
            raise ConfigError(f"subspace matrix must be [{obj.num_params}, p], got {tuple(a.shape)}")
        a64 = a.to(torch.float64).cpu()
        coords = torch.linalg.lstsq(a64, x.detach().to(torch.float64).cpu().unsqueeze(1)).solution[:, 0]
        a = a.to(x.device, x.dtype)
        radius = (eps * (coords.abs() + 1)).to(x.device, x.dtype)
        dim = a.shape[1]

        def apply(u: Tensor) -> Tensor:
            return a @ (radius * u)

        def adjoint(g: Tensor) -> Tensor:
            return radius * (a.T @ g)

    res = maximize_on_ball(obj, apply, adjoint, dim, "inf", 1.0, steps=steps, restarts=restarts, seed=seed)
    return Estimate(
        value=keskar_normalization(res.value, res.base),
        matvecs=0,
        seconds=time.perf_counter() - start,
        samples=[keskar_normalization(v, res.base) for v in res.restart_values],
        extra={
            "max_loss": res.value,
            "loss": res.base,
            "delta": res.delta.detach(),
            "evaluations": res.evaluations,
            "eps": float(eps),
            "subspace_dim": None if subspace is None else int(dim),
            "steps": steps,
            "restarts": restarts,
        },
    )
