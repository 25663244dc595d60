"""Data-parallel Objectives on ``torch.distributed``: each process holds a shard of the examples.

With ``Objective(..., dist=True)`` (the default process group) or ``dist=<ProcessGroup>``, every data-summing
result — value, gradient, H v, G v, the block products, the per-example sums of the non-uniformity, landscape
points — is summed over the processes of the group (``all_reduce``), and ``n`` is the total number of
examples. Every process therefore sees the same numbers, so the estimators (Lanczos, Hutch++, SLQ, power
iteration), which draw their random vectors from seeded generators, run identically on every process and
need no change. Backends: gloo (CPU tensors), NCCL (CUDA tensors; the Objective's device must be a GPU).

Opt-in, not automatic: an Objective built on one process of an initialised group (e.g. a measurement on
rank 0 only, inside a DDP training script) must not wait for the others. Global example index
``offset_r + i`` is example ``i`` of rank ``r`` (ranks in order), so ``subset(index)`` with the same index on
every process selects the same global examples.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = [
    "Group",
    "allreduce_sum",
    "gather_counts",
    "is_main_process",
    "process_group_from_env",
    "require_single_process",
    "resolve_group",
    "shard_range",
]

Group = Any  # torch.distributed.ProcessGroup


def resolve_group(dist: Any, device: torch.device) -> Group | None:
    """The process group of ``dist=`` (None: single process), checked against the Objective's device."""
    if dist is None or dist is False:
        return None
    import torch.distributed as td

    if not td.is_available():
        raise ConfigError("dist= needs torch.distributed, which this torch build does not have")
    if not td.is_initialized():
        raise ConfigError(
            "dist= needs an initialised process group: call torch.distributed.init_process_group() first "
            "(torchrun sets the environment it reads)"
        )
    if dist is True:
        group = td.group.WORLD
    elif isinstance(dist, td.ProcessGroup):
        group = dist
    else:
        raise ConfigError(f"dist must be True, False / None or a torch.distributed ProcessGroup: {dist!r}")
    backend = td.get_backend(group)
    if backend == "nccl" and device.type != "cuda":
        raise ConfigError(
            "the process group uses NCCL, which reduces CUDA tensors only: build the Objective on the GPU "
            "(device='cuda:<local rank>') or use a gloo group for CPU work"
        )
    return group


def allreduce_sum(t: Tensor, group: Group) -> Tensor:
    """Sum of ``t`` over the processes of ``group`` (a new tensor; every process gets the same values)."""
    import torch.distributed as td

    out = t.detach().clone().contiguous()
    td.all_reduce(out, op=td.ReduceOp.SUM, group=group)
    return out


def gather_counts(n_local: int, group: Group, device: torch.device) -> list[int]:
    """The number of examples of every process of ``group``, in rank order."""
    import torch.distributed as td

    size = td.get_world_size(group)
    local = torch.tensor([n_local], dtype=torch.long, device=device)
    parts = [torch.zeros_like(local) for _ in range(size)]
    td.all_gather(parts, local, group=group)
    return [int(p.item()) for p in parts]


def rank_of(group: Group) -> int:
    import torch.distributed as td

    return td.get_rank(group)


def shard_range(n: int, group: Group) -> tuple[int, int]:
    """The contiguous block ``[lo, hi)`` of ``n`` examples this process takes (sizes differ by at most 1)."""
    import torch.distributed as td

    size, rank = td.get_world_size(group), td.get_rank(group)
    return rank * n // size, (rank + 1) * n // size


def require_single_process(obj: Any, what: str) -> None:
    """Refuse a measurement that reads individual examples by global position (per-example gradients,
    margins) on a distributed Objective: those are not sums over examples, so sharding does not apply."""
    if getattr(obj, "distributed", False):
        raise ConfigError(
            f"{what} reads individual examples and is not distributed: run it on one process "
            "(an Objective without dist=)"
        )


def is_main_process() -> bool:
    """True outside ``torch.distributed`` and on rank 0 of an initialised default group (the process that
    writes results and draws progress)."""
    import torch.distributed as td

    return not (td.is_available() and td.is_initialized()) or td.get_rank() == 0


@contextlib.contextmanager
def process_group_from_env(backend: str | None = None) -> Iterator[Group | None]:
    """The default process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1 in the environment), created
    from the environment it sets (``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and destroyed afterwards;
    None in a single process. An already initialised group is used as it is (and left alone).

    ``backend``: default gloo (CPU tensors; the CLI measures on the CPU) — NCCL needs CUDA tensors.
    """
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        yield None
        return
    import torch.distributed as td

    if not td.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if td.is_initialized():
        yield td.group.WORLD
        return
    try:
        td.init_process_group(backend=backend or "gloo", init_method="env://")
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"cannot join the torchrun process group: {err}") from None
    try:
        yield td.group.WORLD
    finally:
        td.destroy_process_group()
