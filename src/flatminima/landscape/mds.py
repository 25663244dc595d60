"""Classical (strain / Torgerson) multidimensional scaling of weight trajectories (Theory II, Sec. 4.1).

Given dissimilarities D (m x m), B = -1/2 J D^(2) J with J = I - 11^T/m the centring matrix and D^(2) the
element-wise squares; with the eigen-decomposition B = V diag(l) V^T (l descending), the k-dimensional
configuration is X = V_k diag(sqrt(max(l_k, 0))). For Euclidean distances of points, X recovers them up to a
rigid motion. Theory II uses the dissimilarity 1 - cosine similarity of the weight vectors; it is not a
Euclidean distance, so B may have negative eigenvalues (kept in ``eigenvalues`` as a diagnostic; the
configuration uses the positive part).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, unknown

__all__ = ["MDSResult", "classical_mds", "cosine_dissimilarity", "euclidean_distances", "trajectory_mds"]

METRICS = ("cosine", "euclidean")


@dataclass
class MDSResult:
    """``coords`` ``[m, k]``, ``eigenvalues`` of B (all m, descending) and the fraction of the positive
    eigenvalue mass captured by the k kept axes."""

    coords: np.ndarray
    eigenvalues: np.ndarray
    explained: float


def classical_mds(dissimilarity: np.ndarray, k: int = 2) -> MDSResult:
    """Classical MDS by numpy ``eigh`` of the double-centred squared dissimilarity matrix (module
    docstring)."""
    d = np.asarray(dissimilarity, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ConfigError(f"dissimilarity must be a square matrix, got shape {d.shape}")
    m = d.shape[0]
    if not 1 <= k <= m:
        raise ConfigError(f"k must be in [1, {m}], got {k}")
    d = 0.5 * (d + d.T)
    j = np.eye(m) - np.full((m, m), 1.0 / m)
    b = -0.5 * j @ (d**2) @ j
    vals, vecs = np.linalg.eigh(b)
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    # Deterministic signs: the largest-magnitude entry of each axis is positive.
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(m)])
    vecs = vecs * np.where(signs == 0, 1.0, signs)
    coords = vecs[:, :k] * np.sqrt(np.clip(vals[:k], 0.0, None))
    positive = vals[vals > 0].sum()
    explained = float(np.clip(vals[:k], 0.0, None).sum() / positive) if positive > 0 else 0.0
    return MDSResult(coords=coords, eigenvalues=vals, explained=explained)


def _as_matrix(weights: Tensor | np.ndarray | list) -> np.ndarray:
    if isinstance(weights, list):
        weights = torch.stack([torch.as_tensor(w).reshape(-1) for w in weights])
    if isinstance(weights, Tensor):
        weights = weights.detach().double().cpu().numpy()
    return np.asarray(weights, dtype=np.float64)


def cosine_dissimilarity(weights: Tensor | np.ndarray | list) -> np.ndarray:
    """1 - cos(w_i, w_j) for the rows of ``weights`` ``[m, p]``."""
    w = _as_matrix(weights)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ConfigError("cosine dissimilarity is undefined for a zero weight vector")
    u = w / norms
    return np.clip(1.0 - u @ u.T, 0.0, 2.0)


def euclidean_distances(weights: Tensor | np.ndarray | list) -> np.ndarray:
    """||w_i - w_j|| for the rows of ``weights`` ``[m, p]`` (Gram form, clipped at 0 before the square
    root)."""
    w = _as_matrix(weights)
    sq = (w**2).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * w @ w.T
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(np.clip(d2, 0.0, None))


def trajectory_mds(weights: Tensor | np.ndarray | list, metric: str = "cosine", k: int = 2) -> MDSResult:
    """Embed weight vectors (one row per recorded step, several trajectories stacked) in k dimensions."""
    if metric not in METRICS:
        raise unknown("MDS metric", metric, METRICS)
    d = cosine_dissimilarity(weights) if metric == "cosine" else euclidean_distances(weights)
    return classical_mds(d, k=k)
