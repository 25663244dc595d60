"""The diffusion matrix of SGD and its spectrum (Chaudhari's thesis, Sec. 6.3: Lemma 6.3, Figs. 6.1-6.2,
Remark 6.40).

With per-example gradients g_k (k = 1..N) and their mean g, minibatches of size b drawn with replacement give
var(grad f_b) = D / b with

    D = (1/N) sum_k g_k g_k^T - g g^T                                        (thesis eq. 6.4),

and without replacement var(grad f_b) = (D_wo / b)(1 - b/N) with D_wo = (1/(N-1)) sum_k (g_k - g)(g_k - g)^T,
i.e. D_wo = (1/(N-1)) sum_k g_k g_k^T - (1 + 1/(N-1)) g g^T = N D / (N - 1). Decision: the thesis prints the
last coefficient of eq. 6.5 as (1 - 1/(N-1)); re-doing its own proof (var 1_{i in b} = b/N - b^2/N^2, cov =
-b(N-b)/(N^2(N-1))) gives (1 + 1/(N-1)), the unbiased sample covariance, which we use (and test against the
empirical variance of minibatch gradients).

D is p x p but has rank <= N - 1: with G the N x p matrix of gradients and J = I - 11^T/N, D = G^T J G / N,
whose non-zero eigenvalues are those of the N x N Gram matrix J G G^T J / N. The p x p matrix is never formed.
The rank uses numpy's ``matrix_rank`` threshold lambda_max * d * eps (d = p, eps of the gradients' dtype);
mean and standard deviation are over all d eigenvalues (the d - N structural zeros included), as is
var(lambda) in the architecture score rank(D)/d + var(lambda(D)) (Remark 6.40). The temperature of SGD is
beta^{-1} = eta / (2b) with replacement and (eta / (2b))(1 - b/N) without.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .._validate import check_float, check_int
from ..errors import ConfigError
from ..objective import Objective
from .gradients import per_example_gradients, pick_examples

__all__ = ["DiffusionSpectrum", "architecture_score", "diffusion_spectrum", "temperature"]


def temperature(lr: float, batch_size: int, n: int | None = None, replacement: bool = True) -> float:
    """SGD temperature beta^{-1}: eta/(2b) with replacement, (eta/(2b))(1 - b/N) without (thesis Lemma
    6.3)."""
    lr = check_float("lr", lr, gt=0)
    batch_size = check_int("batch_size", batch_size, ge=1)
    t = lr / (2.0 * batch_size)
    if replacement:
        return t
    if n is None or n < batch_size:
        raise ConfigError("sampling without replacement needs the data size n >= batch_size")
    return t * (1.0 - batch_size / n)


def architecture_score(rank: int, dim: int, eigenvalue_variance: float) -> float:
    """rank(D)/d + var(lambda(D)) (thesis Remark 6.40)."""
    return rank / dim + eigenvalue_variance


@dataclass
class DiffusionSpectrum:
    """Spectrum of D (``replacement=True``) or D_wo: the non-zero part ``eigenvalues`` (descending, from the
    Gram matrix), dimension ``dim`` = p, ``rank`` with its ``threshold``, mean/std over all d eigenvalues and
    over the numerically non-zero ones, ``trace`` and the architecture score."""

    eigenvalues: np.ndarray
    dim: int
    n: int
    replacement: bool
    rank: int
    threshold: float
    mean: float
    std: float
    mean_nonzero: float
    std_nonzero: float
    trace: float
    score: float

    @property
    def rank_fraction(self) -> float:
        return self.rank / self.dim

    def to_dict(self, with_eigenvalues: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["eigenvalues"] = self.eigenvalues.tolist() if with_eigenvalues else None
        d["rank_fraction"] = self.rank_fraction
        return d


def spectrum_from_gradients(grads: torch.Tensor, replacement: bool = True) -> DiffusionSpectrum:
    """Diffusion-matrix spectrum from per-example gradients ``[N, p]`` via the N x N Gram matrix."""
    n, dim = grads.shape
    if n < 2:
        raise ConfigError("the diffusion matrix needs at least two examples")
    eps = float(torch.finfo(grads.dtype).eps)
    g = grads.double()
    centred = g - g.mean(dim=0, keepdim=True)
    gram = (centred @ centred.T).cpu().numpy() / (n if replacement else n - 1)
    vals = np.linalg.eigvalsh(0.5 * (gram + gram.T))[::-1]
    vals = np.clip(vals, 0.0, None)  # D is PSD: negative values are rounding
    lam_max = float(vals[0]) if len(vals) else 0.0
    threshold = lam_max * dim * eps
    nonzero = vals[vals > threshold]
    mean = float(vals.sum() / dim)
    var = max(float((vals**2).sum() / dim - mean**2), 0.0)
    return DiffusionSpectrum(
        eigenvalues=vals,
        dim=dim,
        n=n,
        replacement=replacement,
        rank=len(nonzero),
        threshold=threshold,
        mean=mean,
        std=float(np.sqrt(var)),
        mean_nonzero=float(nonzero.mean()) if len(nonzero) else 0.0,
        std_nonzero=float(nonzero.std()) if len(nonzero) else 0.0,
        trace=float(vals.sum()),
        score=architecture_score(len(nonzero), dim, var),
    )


def diffusion_spectrum(
    obj: Objective, examples: int | None = None, replacement: bool = True, seed: int = 0
) -> DiffusionSpectrum:
    """Spectrum of the diffusion matrix at the objective's base point (module docstring).

    ``examples``: estimate D on a seeded subset of that many examples (N = examples) to bound the N x p
    memory.
    """
    index = pick_examples(obj, examples, seed)
    return spectrum_from_gradients(per_example_gradients(obj, index), replacement=replacement)
