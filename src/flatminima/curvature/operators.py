"""Implicit symmetric linear operators on flat parameter vectors (in the spirit of curvlinops).

An operator knows its size ``p``, dtype and device, applies ``A v`` (``op @ v`` or ``op.matvec(v)``) and
``A V`` for a block ``V`` of shape [p, b] (``op @ V`` or ``op.matmat(V)``), counts its products in
``op.matvecs`` (a block of b columns counts b), and composes: ``a + b``, ``a - b``, ``2.0 * a``, ``-a``,
``a @ b`` (product), ``identity(p)``. ``to_dense()`` builds the matrix block by block (tests only: p
products). Numpy vectors and blocks are accepted (the result is a numpy array of the input's float dtype);
``to_scipy()`` wraps the operator as a ``scipy.sparse.linalg.LinearOperator`` (float64 in and out, block
products for ``matmat``), so scipy's ``eigsh``, ``cg`` and friends run on it directly.

Block products: one forward/backward graph for a whole block (``Objective.hvp_block`` / ``ggn_vp_block``
where the objective has them) is much cheaper per column than b separate products on CPU, so the stochastic
estimators (Hutchinson, Hutch++, SLQ with several runs at once) ask for blocks. A block is split into pieces
of at most ``max_block`` columns (memory: each column carries its own activations); ``max_block`` is an
attribute of each operator (``None``: no limit).

Curvature operators of an :class:`~flatminima.Objective`:

* :class:`HessianOperator` — H v = (1/n) sum_i hess l_i v (``obj.hvp``).
* :class:`GGNOperator` — G v = (1/n) sum_i J_i^T Q_i J_i v (``obj.ggn_vp``).
* :class:`SigmaOperator` — Sigma v = (1/n) sum_i H_i^2 v - H^2 v (Wu, Ma & E 2018, Def. 3), computed with
  per-example HVPs (``method="exact"``) or Gauss-Newton blocks (``method="ggn"``, see ``sigma.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from ._accurate import col_dots

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

#: Columns per block product of a curvature operator (each column carries its own activations).
CURVATURE_BLOCK = 16


class LinearOperator:
    """Base class: a symmetric p x p operator applied implicitly. Subclasses implement ``_matvec`` (and,
    where a block costs less than its columns one by one, ``_matmat``)."""

    max_block: int | None = None

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

    def _matmat(self, v: Tensor) -> Tensor:
        """A V for a block [p, b]; default: column by column."""
        return torch.stack([self._matvec(c) for c in v.T], dim=1)

    def _as_tensor(self, v: Any, dim: int) -> Tensor:
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(np.ascontiguousarray(v))
        if not isinstance(v, Tensor):
            raise ConfigError(f"expected a tensor or numpy array, got {type(v).__name__}")
        if v.dim() != dim or v.shape[0] != self.size:
            want = f"[{self.size}]" if dim == 1 else f"[{self.size}, b]"
            raise ConfigError(f"operator of size {self.size} needs a {want} input, got {tuple(v.shape)}")
        return v.to(self.device, self.dtype)

    @staticmethod
    def _like(out: Tensor, v: Any) -> Tensor | np.ndarray:
        if isinstance(v, np.ndarray):
            kind = v.dtype if np.issubdtype(v.dtype, np.floating) else np.float64
            return out.detach().cpu().numpy().astype(kind, copy=False)
        return out

    def matvec(self, v: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """A v for one vector ``[p]``; counts one product."""
        t = self._as_tensor(v, 1)
        self.matvecs += 1
        return self._like(self._matvec(t), v)

    def matmat(self, v: Tensor | np.ndarray) -> Tensor | np.ndarray:
        """A V for a block ``[p, b]`` (block products where the operator has them); counts b products."""
        t = self._as_tensor(v, 2)
        b = t.shape[1]
        self.matvecs += b
        if b == 0:
            return self._like(t.clone(), v)
        return self._like(self._by_blocks(self._matmat, t, dim=1), v)

    def _by_blocks(self, fn: Callable[[Tensor], Tensor], t: Tensor, dim: int) -> Tensor:
        """``fn`` over the column blocks of ``t`` [p, b > 0] of at most ``max_block`` columns, joined along
        ``dim`` of its results."""
        b = t.shape[1]
        step = self.max_block or b
        if b <= step:
            return fn(t)
        return torch.cat([fn(t[:, i : i + step]) for i in range(0, b, step)], dim=dim)

    def quadratic_forms(self, v: Tensor | np.ndarray) -> Tensor:
        """v_j^T A v_j for the columns of a block ``[p, b]``, float64 ``[b]``; counts b products.

        Default: from the block product (``col_dots(V, A V)``); operators that can form the quadratic forms
        for less than the products override ``_forms`` (the Hessian of a plain MLP: second-order forward
        mode, ``objective/sequential.py``).
        """
        t = self._as_tensor(v, 2)
        b = t.shape[1]
        self.matvecs += b
        if b == 0:
            return torch.zeros(0, dtype=torch.float64, device=t.device)
        return self._by_blocks(self._forms, t, dim=0)

    def _forms(self, v: Tensor) -> Tensor:
        return col_dots(v, self._matmat(v))

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return ProductOperator(self, other)
        if getattr(other, "ndim", 1) == 2:
            return self.matmat(other)
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
        """The dense matrix, block by block (p products; for tests on small problems)."""
        eye = torch.eye(self.size, dtype=self.dtype, device=self.device)
        step = max(1, self.max_block or 64)
        return torch.cat([self.matmat(eye[:, i : i + step]) for i in range(0, self.size, step)], dim=1)

    def to_scipy(self):
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (float64 in and out; ``matmat`` uses
        block products), e.g. ``scipy.sparse.linalg.eigsh(op.to_scipy(), k=5)``. Products are counted in
        ``self.matvecs`` as usual."""
        from scipy.sparse.linalg import LinearOperator as ScipyLinearOperator

        def mv(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64)
            return self.matvec(x.reshape(-1)).reshape(x.shape)

        def mm(x: np.ndarray) -> np.ndarray:
            return self.matmat(np.asarray(x, dtype=np.float64))

        return ScipyLinearOperator(
            shape=self.shape, matvec=mv, rmatvec=mv, matmat=mm, rmatmat=mm, dtype=np.float64
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, dtype={self.dtype})"


class CallableOperator(LinearOperator):
    """Wrap a function ``v -> A v`` (optionally ``V -> A V`` for blocks; dense matrices:
    ``CallableOperator.from_matrix(M)``)."""

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        size: int,
        dtype: torch.dtype,
        device="cpu",
        block_fn: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(size, dtype, device)
        self._fn = fn
        self._block_fn = block_fn

    @classmethod
    def from_matrix(cls, matrix: Tensor) -> CallableOperator:
        return cls(lambda v: matrix @ v, matrix.shape[0], matrix.dtype, matrix.device, lambda v: matrix @ v)

    def _matvec(self, v: Tensor) -> Tensor:
        return self._fn(v)

    def _matmat(self, v: Tensor) -> Tensor:
        return self._block_fn(v) if self._block_fn is not None else super()._matmat(v)


class ScaledOperator(LinearOperator):
    """c A."""

    def __init__(self, op: LinearOperator, scale: float) -> None:
        super().__init__(op.size, op.dtype, op.device)
        self.op, self.scale = op, scale
        self.max_block = op.max_block

    def _matvec(self, v: Tensor) -> Tensor:
        return self.scale * self.op.matvec(v)

    def _matmat(self, v: Tensor) -> Tensor:
        return self.scale * self.op.matmat(v)

    def _forms(self, v: Tensor) -> Tensor:
        return self.scale * self.op.quadratic_forms(v)


class SumOperator(LinearOperator):
    """sum_j c_j A_j (identity terms cost nothing)."""

    def __init__(self, terms: list[tuple[float, LinearOperator]]) -> None:
        first = terms[0][1]
        if any(op.size != first.size for _, op in terms):
            raise ConfigError("operators of different sizes cannot be added")
        super().__init__(first.size, first.dtype, first.device)
        self.terms = terms
        blocks = [op.max_block for _, op in terms if op.max_block is not None]
        self.max_block = min(blocks) if blocks else None

    def _matvec(self, v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        for c, op in self.terms:
            out += c * op.matvec(v)
        return out

    def _matmat(self, v: Tensor) -> Tensor:
        out = torch.zeros_like(v)
        for c, op in self.terms:
            out += c * op.matmat(v)
        return out

    def _forms(self, v: Tensor) -> Tensor:
        out = torch.zeros(v.shape[1], dtype=torch.float64, device=v.device)
        for c, op in self.terms:
            out += c * op.quadratic_forms(v)
        return out


class ProductOperator(LinearOperator):
    """A B (symmetric when A and B commute, e.g. powers of one operator)."""

    def __init__(self, a: LinearOperator, b: LinearOperator) -> None:
        super().__init__(a.size, a.dtype, a.device)
        self.a, self.b = a, b
        blocks = [op.max_block for op in (a, b) if op.max_block is not None]
        self.max_block = min(blocks) if blocks else None

    def _matvec(self, v: Tensor) -> Tensor:
        return self.a.matvec(self.b.matvec(v))

    def _matmat(self, v: Tensor) -> Tensor:
        return self.a.matmat(self.b.matmat(v))


class _Identity(LinearOperator):
    def matvec(self, v: Any) -> Any:  # free: not counted
        return self._like(self._as_tensor(v, 1).clone(), v)

    def matmat(self, v: Any) -> Any:
        return self._like(self._as_tensor(v, 2).clone(), v)

    def quadratic_forms(self, v: Any) -> Tensor:  # free: not counted
        t = self._as_tensor(v, 2)
        return col_dots(t, t)


def identity(
    size: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> LinearOperator:
    """The identity I (its products are not counted as matvecs)."""
    return _Identity(size, dtype, device)


class _ObjectiveOperator(LinearOperator):
    """An operator defined by an objective's product method and its block twin (when the objective has
    one; otherwise column by column)."""

    _single = ""
    _block = ""

    def __init__(self, obj) -> None:
        super().__init__(obj.num_params, obj.dtype, obj.device)
        self.obj = obj
        self.max_block = CURVATURE_BLOCK

    def _matvec(self, v: Tensor) -> Tensor:
        return getattr(self.obj, self._single)(v)

    def _matmat(self, v: Tensor) -> Tensor:
        block = getattr(self.obj, self._block, None)
        if block is None or v.shape[1] == 1:
            return super()._matmat(v)
        return block(v)


class HessianOperator(_ObjectiveOperator):
    """H v = (1/n) sum_i hess l_i(theta) v at the objective's base point (``obj.hvp``; blocks:
    ``obj.hvp_block``)."""

    _single, _block = "hvp", "hvp_block"

    def _forms(self, v: Tensor) -> Tensor:
        return self.obj.hessian_quadratic_forms(v)


class GGNOperator(_ObjectiveOperator):
    """G v = (1/n) sum_i J_i^T Q_i J_i v, the generalized Gauss-Newton matrix (``obj.ggn_vp``; blocks:
    ``obj.ggn_vp_block``)."""

    _single, _block = "ggn_vp", "ggn_vp_block"
