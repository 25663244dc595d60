"""Directions in parameter space for flatness radii and landscape slices.

* :func:`selection_mask` — which entries of the flat vector a probe may move: ``"all"``, ``"top"`` (the last
  parametrized module, as in the "top layer only" flatness test of Theory IIb, Table 1) or name patterns.
* :func:`random_unit_directions` — isotropic unit directions supported on a selection (Theory IIb, eq. 11).
* :func:`random_directions` — Gaussian directions with filter normalization (Li et al. 2018, Sec. 4): each
  filter (a slice along dim 0 of a weight of dim >= 2: a conv output channel, a dense layer's unit) of the
  direction is rescaled to the norm of the same filter of the weights, d_f <- d_f ||w_f|| / ||d_f||.
  One-dimensional parameters (biases, BatchNorm weight/bias) are handled by ``bias_bn``: ``"zero"`` (default;
  their direction is 0, i.e. Li et al.'s ``--xignore biasbn``) or ``"weights"`` (the direction equals the
  parameter itself, what Li et al.'s code does when they are not ignored). BN running statistics are buffers,
  never moved. ``norm="layer"`` rescales whole tensors instead of filters; ``"none"`` keeps raw Gaussians.
* :func:`hessian_directions` — top Hessian eigenvectors (Lanczos, ``flatminima.curvature``).
* :func:`pca_directions` — principal directions of a recorded trajectory about its last point (Li et al. 2018,
  Sec. 7), with the projected path.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, unknown
from ..objective import Objective

__all__ = [
    "PCADirections",
    "hessian_directions",
    "pca_directions",
    "random_directions",
    "random_unit_directions",
    "selection_mask",
]

NORMS = ("filter", "layer", "none")
BIAS_BN = ("zero", "weights")


def selection_mask(obj: Objective, params: str | Sequence[str] = "all") -> Tensor:
    """Boolean mask over the flat vector: ``"all"``, ``"top"`` (last parametrized module) or name patterns."""
    if params == "all":
        return torch.ones(obj.num_params, dtype=torch.bool, device=obj.device)
    if params == "top":
        from ..models import top_layer_names  # lazy: keeps the landscape package light to import

        names = set(top_layer_names(obj.model))
        chosen = [k for k in obj.param_names if k in names]
    else:
        patterns = [params] if isinstance(params, str) else list(params)
        chosen = [k for k in obj.param_names if any(fnmatch.fnmatchcase(k, pat) for pat in patterns)]
    if not chosen:
        raise ConfigError(f"params={params!r} selects no parameter; available: {', '.join(obj.param_names)}")
    mask = torch.zeros(obj.num_params, dtype=torch.bool, device=obj.device)
    slices = obj.layer_slices()
    for k in chosen:
        mask[slices[k]] = True
    return mask


def _gaussian(count: int, size: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(count, size, generator=g, dtype=torch.float64)


def random_unit_directions(
    obj: Objective, count: int, params: str | Sequence[str] = "all", seed: int = 0
) -> Tensor:
    """``count`` isotropic unit directions ``[count, p]`` supported on the selected parameters (zero
    elsewhere).

    Drawn in float64 on CPU (same seed, same directions on any device), then cast to the objective's dtype.
    """
    if count < 1:
        raise ConfigError(f"count must be positive, got {count}")
    mask = selection_mask(obj, params).cpu()
    d = _gaussian(count, obj.num_params, seed) * mask
    d = d / d.norm(dim=1, keepdim=True)
    return d.to(obj.device, obj.dtype)


def random_directions(
    obj: Objective,
    count: int = 2,
    seed: int = 0,
    norm: str = "filter",
    bias_bn: str = "zero",
    params: str | Sequence[str] = "all",
) -> Tensor:
    """``count`` seeded Gaussian directions ``[count, p]`` normalized as in Li et al. 2018 (module
    docstring)."""
    if norm not in NORMS:
        raise unknown("direction normalization", norm, NORMS)
    if bias_bn not in BIAS_BN:
        raise unknown("bias/BN handling", bias_bn, BIAS_BN)
    mask = selection_mask(obj, params).cpu()
    raw = _gaussian(count, obj.num_params, seed)
    theta = obj.theta.detach().double().cpu()
    out = torch.zeros_like(raw)
    for name, sl in obj.layer_slices().items():
        shape = obj.param_shapes[obj.param_names.index(name)]
        w = theta[sl]
        for i in range(count):
            d = raw[i, sl]
            if len(shape) <= 1:
                out[i, sl] = 0.0 if bias_bn == "zero" else w
                continue
            if norm == "filter":
                dm, wm = d.view(shape[0], -1), w.view(shape[0], -1)
                dm = dm * (wm.norm(dim=1, keepdim=True) / dm.norm(dim=1, keepdim=True).clamp_min(1e-300))
                out[i, sl] = dm.reshape(-1)
            elif norm == "layer":
                out[i, sl] = d * (w.norm() / d.norm().clamp_min(1e-300))
            else:
                out[i, sl] = d
    return (out * mask).to(obj.device, obj.dtype)


def hessian_directions(
    obj: Objective, count: int = 2, tol: float = 1e-4, max_iter: int = 100, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """Top ``count`` Hessian eigenpairs (largest algebraic): ``(eigenvalues [count], directions [count,
    p])``."""
    from ..curvature.lanczos import lanczos  # lazy: the curvature package is optional for slices
    from ..curvature.operators import HessianOperator

    res = lanczos(
        HessianOperator(obj), k=count, which="LA", tol=tol, max_iter=max(max_iter, count), seed=seed
    )
    return res.eigenvalues.detach(), res.eigenvectors.T.contiguous().to(obj.device, obj.dtype)


@dataclass
class PCADirections:
    """Principal directions of a trajectory about ``origin`` (its last point).

    ``directions`` ``[k, p]`` (unit norm), ``explained`` the fraction of the variance of the centred path each
    explains, ``path`` ``[T, k]`` the coordinates of every recorded point in the plane.
    """

    origin: Tensor
    directions: Tensor
    explained: np.ndarray
    path: np.ndarray


def pca_directions(trajectory: Tensor | Sequence[Tensor], k: int = 2) -> PCADirections:
    """PCA of the matrix [w_t - w_T] of a trajectory (Li et al. 2018, Sec. 7).

    As in Li et al.'s code (sklearn PCA), the rows are mean-centred before the SVD of the ``[T, p]`` matrix;
    the path coordinates are the projections of w_t - w_T (so the last point sits at the origin of the plane).
    """
    w = torch.stack(list(trajectory)) if not isinstance(trajectory, Tensor) else trajectory
    if w.dim() != 2 or len(w) < k + 1:
        raise ConfigError(f"need a [T, p] trajectory with T > k={k}, got shape {tuple(w.shape)}")
    origin = w[-1]
    m = (w - origin).double()
    _, s, vt = torch.linalg.svd(m - m.mean(dim=0, keepdim=True), full_matrices=False)
    dirs = vt[:k]
    # Fix the sign so that the first point has non-negative coordinates (deterministic output).
    coords = m @ dirs.T
    signs = torch.where(coords[0] < 0, -1.0, 1.0).to(dirs.dtype)
    dirs = dirs * signs.unsqueeze(1)
    var = s.pow(2)
    return PCADirections(
        origin=origin,
        directions=dirs.to(w.dtype),
        explained=(var[:k] / var.sum().clamp_min(1e-300)).cpu().numpy(),
        path=(m @ dirs.T).cpu().numpy(),
    )
