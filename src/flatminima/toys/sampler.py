"""Langevin sampler vectorized over chains (plain tensor ops, no per-chain Python).

Three dynamics on x of shape ``[chains, d]`` with drift F(x) (= -grad U for a potential):
* ``"gdl"``  (Langevin gradient descent, Theory IIb Sec. 3.2): x <- x + lr F(x) + sqrt(2 lr T) W;
* ``"sgd"``  (SGD with synthetic minibatch noise): x <- x + lr (F(x) - noise_std xi) with xi uniform on
  {-1, +1}^d: the gradient of a random example U_xi(x) = U(x) + noise_std xi . x (examples differ by
  constant tilts; mean gradient grad U, covariance D = noise_std^2 I, not Gaussian). Its temperature is
  T = lr noise_std^2 / 2 (thesis Lemma 6.3: beta^{-1} = eta / (2b) for the D of a single example);
* ``"sgdl"`` (Theory IIb eq. 5): the SGD step plus extra Gaussian noise gamma' W, T = lr noise_std^2 / 2 +
  gamma'^2 / (2 lr).
All three are Euler-Maruyama steps of dX = F dt + sqrt(2 T) dB, whose stationary law for F = -grad U is
exp(-U/T)/Z (up to O(lr) discretization error).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from .._progress import progress_bar
from .._threads import torch_threads
from ..errors import ConfigError

Method = Literal["gdl", "sgd", "sgdl"]
Drift = Callable[[Tensor], Tensor]

__all__ = ["SampleResult", "effective_temperature", "langevin_sample"]


@dataclass
class SampleResult:
    """Final states ``x`` [chains, d]; ``trace`` [records, traced chains, d] (empty unless requested);
    ``temperature``: the effective temperature of the dynamics."""

    x: Tensor
    trace: Tensor
    temperature: float


def effective_temperature(
    method: Method, lr: float, temperature: float = 0.0, noise_std: float = 0.0, extra_noise: float = 0.0
) -> float:
    """The temperature T of the stationary law exp(-U/T) of each dynamics (module docstring)."""
    if method == "gdl":
        return temperature
    if method == "sgd":
        return lr * noise_std**2 / 2
    if method == "sgdl":
        return lr * noise_std**2 / 2 + extra_noise**2 / (2 * lr)
    raise ConfigError(f"unknown Langevin method {method!r}; choose 'gdl', 'sgd' or 'sgdl'")


@torch.no_grad()
def langevin_sample(
    drift: Drift,
    x0: Tensor,
    lr: float,
    steps: int,
    method: Method = "gdl",
    temperature: float = 0.0,
    noise_std: float = 0.0,
    extra_noise: float = 0.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    trace_every: int = 0,
    trace_chains: int = 8,
    threads: int | None = None,
) -> SampleResult:
    """Run ``steps`` steps of ``method`` (module docstring) from ``x0`` ``[chains, d]``.

    ``drift(x)`` returns F(x) of the same shape (e.g. ``potential.force``). ``trace_every > 0`` records the
    first ``trace_chains`` chains every ``trace_every`` steps (for trajectory plots). Seeded by ``generator``
    or ``seed``; same seed, same samples.
    """
    if lr <= 0 or steps < 0:
        raise ConfigError(f"need lr > 0 and steps >= 0, got lr={lr}, steps={steps}")
    if x0.dim() != 2:
        raise ConfigError(f"x0 must have shape [chains, d], got {tuple(x0.shape)}")
    temp = effective_temperature(method, lr, temperature, noise_std, extra_noise)
    if seed is not None:
        generator = torch.Generator(device=x0.device).manual_seed(seed)
    gauss = math.sqrt(2 * lr * temperature) if method == "gdl" else extra_noise if method == "sgdl" else 0.0
    sign_scale = 0.0 if method == "gdl" else lr * noise_std
    x = x0.clone()
    noise = torch.empty_like(x)
    records = []
    if threads is None and x.numel() < 2**18:
        threads = 1
    with torch_threads(threads), progress_bar(steps, f"langevin ({method})") as bar:
        for step in range(steps):
            f = drift(x)
            x.add_(f, alpha=lr)
            if sign_scale:
                noise.bernoulli_(0.5, generator=generator)
                x.add_(noise, alpha=2 * sign_scale).sub_(sign_scale)
            if gauss:
                noise.normal_(generator=generator)
                x.add_(noise, alpha=gauss)
            if trace_every and step % trace_every == 0:
                records.append(x[:trace_chains].clone())
            if step % 256 == 255:
                bar.advance(256)
    trace = torch.stack(records) if records else torch.empty(0, min(trace_chains, len(x)), x.shape[1])
    return SampleResult(x, trace, temp)
