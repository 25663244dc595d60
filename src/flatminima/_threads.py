"""Torch intra-op thread control.

The nets of the smoke/default scales are small: their ops gain nothing from intra-op parallelism, and on a
busy 2-core machine the OpenMP hand-off dominates (measured 3-8x slower with 2 threads under load). Sweeps
parallelise over runs instead (``flatminima.runner`` workers are single-threaded).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it); also usable as a decorator."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
