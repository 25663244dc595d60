"""Optimizers (torch.optim.Optimizer subclasses): Langevin, Entropy-SGD / PDE smoothing, Parle, SAM / ASAM.

``make(name, params, **kwargs)`` builds one by name; ``available()`` lists the names. Optimizers whose class
attribute ``needs_closure`` is True evaluate several gradients per step: ``step(closure)`` calls the closure
several times and every call must draw a FRESH minibatch, call ``backward`` and return the loss (grads are
zeroed before each call). Those that also set ``closure_same_batch = True`` (SAM, ASAM) need every call of
one step on the SAME minibatch instead (``fm.train`` hands them a :class:`BatchClosure`). The others follow
the usual ``loss.backward(); opt.step()`` protocol.

PyTorch conventions kept by all of them:

* every hyper-parameter (``lr``, ``inner_lr``, ``L``, ``gamma``, ``temperature``, ``alpha``, ``rho``, ``J``,
  ...) lives in ``param_groups`` (per-group values; a schedule or user code may change them between steps,
  the next step uses them); values that must agree across groups (``L``) are checked at the step;
* parameters with ``requires_grad=False`` are skipped (never moved, no noise);
* ``state_dict()`` holds everything needed to resume bit for bit: momentum buffers, replicas, the step
  counter ``t`` and the noise generator's state (``seed=`` / ``generator=``; the loaded state wins);
* a closure that leaves no gradient is a :class:`~flatminima.errors.ConfigError`; a step whose closure
  raises is undone (parameters and generator as before it), so it can be retried.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor
from torch.optim import Optimizer

from ..errors import ConfigError, unknown
from .entropy import EntropyAdam, EntropySGD, local_entropy_inner_loop
from .langevin import SGDL, SGLD, noise_at
from .parle import ElasticSGD, Parle, VmapReplicaClosure
from .pde import HJSGD, HeatSGD
from .sam import ASAM, SAM, BatchClosure, frozen_running_stats
from .trivialized import TrivializedSGD

__all__ = [
    "ASAM",
    "HJSGD",
    "SAM",
    "SGDL",
    "SGLD",
    "BatchClosure",
    "ElasticSGD",
    "EntropyAdam",
    "EntropySGD",
    "HeatSGD",
    "Parle",
    "TrivializedSGD",
    "VmapReplicaClosure",
    "available",
    "frozen_running_stats",
    "local_entropy_inner_loop",
    "make",
    "noise_at",
]

_REGISTRY: dict[str, type[Optimizer]] = {
    "sgdl": SGDL,
    "sgld": SGLD,
    "entropy-sgd": EntropySGD,
    "entropy-adam": EntropyAdam,
    "hj-sgd": HJSGD,
    "heat-sgd": HeatSGD,
    "trivialized-sgd": TrivializedSGD,
    "parle": Parle,
    "elastic-sgd": ElasticSGD,
    "sam": SAM,
    "asam": ASAM,
}


def available() -> list[str]:
    """Names accepted by :func:`make`."""
    return sorted(_REGISTRY)


def make(name: str, params: Iterable[Tensor] | Iterable[dict], **kwargs: object) -> Optimizer:
    """Build the optimizer ``name`` over ``params`` with keyword hyper-parameters.

    Raises UnknownNameError for an unknown name and ConfigError for an unknown or invalid hyper-parameter.
    """
    key = name.lower().replace("_", "-")
    if key not in _REGISTRY:
        raise unknown("optimizer", name, available())
    try:
        return _REGISTRY[key](params, **kwargs)  # type: ignore[call-arg]
    except TypeError as exc:
        raise ConfigError(f"bad arguments for optimizer {name!r}: {exc}") from exc
