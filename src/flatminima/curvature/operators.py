"""Implicit symmetric linear operators on flat parameter vectors (in the spirit of curvlinops).

An operator knows its size ``p``, dtype and device, applies ``A v`` (``op @ v`` or ``op.matvec(v)``), counts
its products in ``op.matvecs``, and composes: ``a + b``, ``a - b``, ``2.0 * a``, ``-a``, ``a @ b`` (product),
``identity(p)``. ``to_dense()`` builds the matrix column by column (tests only: p products).

Curvature operators of an :class:`~flatminima.Objective`:

* :class:`HessianOperator` — H v = (1/n) sum_i hess l_i v (``obj.hvp``).
* :class:`GGNOperator` — G v = (1/n) sum_i J_i^T Q_i J_i v (``obj.ggn_vp``).
* :class:`SigmaOperator` — Sigma v = (1/n) sum_i H_i^2 v - H^2 v (Wu, Ma & E 2018, Def. 3), computed with
  per-example HVPs (``method="exact"``) or Gauss-Newton blocks (``method="ggn"``, see ``sigma.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "CallableOperator",
    "GGNOperator",
    "HessianOperator",
    "LinearOperator",
    "ProductOperator",
    "ScaledOperator",
    "SumOperator",
    "identity",
]


class LinearOperator:
    """Base class: a symmetric p x p operator applied implicitly. Subclasses implement ``_matvec``."""

    def __init__(self, size: int, dtype: torch.dtype, device: torch.device | str = "cpu") -> None:
        self.size = int(size)
        self.dtype = dtype
        self.device = torch.device(device)
        self.matvecs = 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    def _matvec(self, v: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def matvec(self, v: Tensor) -> Tensor:
        """A v for one vector ``[p]``; counts one product."""
        self.matvecs += 1
        return self._matvec(v.to(self.device, self.dtype))

    def __matmul__(self, other: Tensor | LinearOperator) -> Tensor | LinearOperator:
        if isinstance(other, LinearOperator):
            return ProductOperator(self, other)
        if other.dim() == 2:
            return torch.stack([self.matvec(c) for c in other.T], dim=1)
        return self.matvec(other)

    def __add__(self, other: LinearOperator) -> LinearOperator:
        return SumOperator([(1.0, self), (1.0, other)])

    def __sub__(self, other: LinearOperator) -> LinearOperator:
        return SumOperator([(1.0, self), (-1.0, other)])

    def __mul__(self, scale: float) -> LinearOperator:
        return ScaledOperator(self, float(scale))

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return ScaledOperator(self, -1.0)

    def to_dense(self) -> Tensor:
        """The dense matrix, column by column (p products; for tests on small problems)."""
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(e) for e in eye], dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, dtype={self.dtype})"


class CallableOperator(LinearOperator):
    """Wrap a function ``v -> A v`` (and dense matrices: ``CallableOperator.from_matrix(M)``)."""

    def __init__(self, fn: Callable[[Tensor], Tensor], size: int, dtype: torch.dtype, device="cpu") -> None:
        super().__init__(size, dtype, device)
        self._fn = fn

    @classmethod
    def from_matrix(cls, matrix: Tensor) -> CallableOperator:
        return cls(lambda v: matrix @ v, matrix.shape[0], matrix.dtype, matrix.device)

    def _matvec(self, v: Tensor) -> Tensor:
        return self._fn(v)


class ScaledOperator(LinearOperator):
    """c A."""

    def __init__(self, op: LinearOperator, scale: float) -> None:
        super().__init__(op.size, op.dtype, op.device)
        self.op, self.scale = op, scale

    def _matvec(self, v: Tensor) -> Tensor:
        return self.scale * self.op.matvec(v)


class SumOperator(LinearOperator):
    """sum_j c_j A_j (identity terms cost nothing)."""

    def __init__(self, terms: list[tuple[float, LinearOperator]]) -> None:
        first = terms[0][1]
        if any(op.size != first.size for _, op in terms):
            raise ValueError("operators of different sizes cannot be added")
        super().__init__(first.size, first.dtype, first.device)
        self.terms = terms

    def _matvec(self, v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        for c, op in self.terms:
            out += c * op.matvec(v)
        return out


class ProductOperator(LinearOperator):
    """A B (symmetric when A and B commute, e.g. powers of one operator)."""

    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        super().__init__(a.size, a.dtype, a.device)
        self.a, self.b = a, b

    def _matvec(self, v: Tensor) -> Tensor:
        return self.a.matvec(self.b.matvec(v))


class _Identity(LinearOperator):
    def matvec(self, v: Tensor) -> Tensor:  # free: not counted
        return v.to(self.device, self.dtype).clone()


def identity(
    size: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> LinearOperator:
    """The identity I (its products are not counted as matvecs)."""
    return _Identity(size, dtype, device)


class HessianOperator(LinearOperator):
    """H v = (1/n) sum_i hess l_i(theta) v at the objective's base point (``obj.hvp``)."""

    def __init__(self, obj) -> None:
        super().__init__(obj.num_params, obj.dtype, obj.device)
        self.obj = obj

    def _matvec(self, v: Tensor) -> Tensor:
        return self.obj.hvp(v)


class GGNOperator(LinearOperator):
    """G v = (1/n) sum_i J_i^T Q_i J_i v, the generalized Gauss-Newton matrix (``obj.ggn_vp``)."""

    def __init__(self, obj) -> None:
        super().__init__(obj.num_params, obj.dtype, obj.device)
        self.obj = obj

    def _matvec(self, v: Tensor) -> Tensor:
        return self.obj.ggn_vp(v)
