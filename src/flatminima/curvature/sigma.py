"""Products with H, H^2 and S = (1/n) sum_i H_i^2, hence with Sigma = S - H^2 (Wu, Ma & E 2018, Def. 3).

Two engines share one interface, ``combo(v, ch, chh, cs) = ch H v + chh H (H v) + cs S v`` (one call computes
exactly the products that formula needs):

* ``GramExactMoments`` (``sigma_gram.py``, used for "exact" whenever every selected parameter sits in a Linear
  or Conv2d layer) — S v as a mixed second derivative of per-example gradient inner products, a few full-data
  passes per product.
* :class:`ExactMoments` (the general "exact" fallback) — per-example HVPs, vectorized with ``vmap`` and
  chunked: u_i = H_i v, then H_i u_i;
  H v = mean_i u_i comes for free, H (H v) is one more full-data HVP. About two full-data HVP passes per
  product (not the 2n + 1 single-example products of a Python loop).
* :class:`GGNMoments` — near an interpolating minimum H_i = J_i^T Q_i J_i (Q_i = d^2 l_i / d f^2), so
  H_i^2 v = J_i^T Q_i M_i Q_i J_i v with precomputed K x K blocks M_i = J_i J_i^T (``jacobian_gram.py``).
  A product is one batched JVP (w = J v), per-example K x K products, and one batched VJP; H v is the
  Gauss-Newton G v (a second JVP/VJP pair gives G (G v)). Exact when the loss residual term vanishes
  (interpolation with MSE; a linear model with MSE at any point).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .jacobian_gram import gram_memory, jacobian_gram_blocks
from .operators import LinearOperator

__all__ = ["GGN_MEMORY", "ExactMoments", "GGNMoments", "GGNTooLarge", "SigmaOperator", "moments"]

#: Default memory budget (bytes) of the Gauss-Newton blocks (``memory_budget=`` of non_uniformity & co.).
GGN_MEMORY = 2**31


def _gb(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB"

_EXACT_CHUNK_BYTES = 2**28


class ExactMoments:
    """H, H^2 and S products from per-example Hessian-vector products (vmap, chunked)."""

    def __init__(self, obj, chunk_size: int | None = None) -> None:
        obj._require_eval_bn("exact non-uniformity (per-example Hessians)")
        self.obj = obj
        if chunk_size is None:
            chunk_size = obj.chunk_size or max(
                1, _EXACT_CHUNK_BYTES // (3 * obj.num_params * obj.theta.element_size())
            )
        self.chunk_size = max(1, min(int(chunk_size), getattr(obj, "n_local", obj.n)))
        self.method = "exact"

    def hvp(self, v: Tensor) -> Tensor:
        return self.obj.hvp(v)

    def _first_and_second(self, v: Tensor) -> tuple[Tensor, Tensor]:
        """(H v, S v) with S = (1/n) sum_i H_i (H_i v)."""
        obj = self.obj
        hv = torch.zeros_like(v)
        sv = torch.zeros_like(v)
        for x, y in obj.chunks(self.chunk_size):
            u = obj.per_example_hvp(v, x, y)
            hv += u.sum(0)
            sv += obj.per_example_hvp(u, x, y).sum(0)
            del u
        return obj.allreduce(hv) / obj.n, obj.allreduce(sv) / obj.n

    def combo(self, v: Tensor, ch: float, chh: float, cs: float) -> Tensor:
        if cs == 0.0:
            hv = self.obj.hvp(v)
            return ch * hv + (chh * self.obj.hvp(hv) if chh else 0.0)
        hv, sv = self._first_and_second(v)
        out = ch * hv + cs * sv
        if chh:
            out = out + chh * self.obj.hvp(hv)
        return out


class _Linearization:
    """Outputs f(theta) on a chunk with a cached graph: J v by double backward, J^T u by one backward."""

    def __init__(self, obj, x: Tensor) -> None:
        self.leaf = obj.theta.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            f = obj.outputs_fn(self.leaf, x)
            self.shape = f.shape
            self.f = f.reshape(f.shape[0], -1)
            self.dummy = torch.zeros_like(self.f, requires_grad=True)
            (self.jt_dummy,) = torch.autograd.grad(self.f, self.leaf, self.dummy, create_graph=True)

    def jvp(self, v: Tensor) -> Tensor:
        (jv,) = torch.autograd.grad(self.jt_dummy, self.dummy, v, retain_graph=True)
        return jv

    def vjp(self, u: Tensor) -> Tensor:
        (g,) = torch.autograd.grad(self.f, self.leaf, u, retain_graph=True)
        return g


def _output_hessians(obj, f: Tensor, y: Tensor) -> Tensor:
    """Q_i = d^2 l_i / d f^2 as [m, K, K]: closed forms for the built-in losses (mse: (2/K) I, the Hessian of
    (1/K) ||f - y||^2; cross_entropy: diag(p) - p p^T, p = softmax(f)), autograd otherwise."""
    m = len(f)
    f2 = f.reshape(m, -1)
    k = f2.shape[1]
    if obj.loss_name == "mse":
        return (2.0 / k) * torch.eye(k, dtype=f.dtype, device=f.device).expand(m, k, k)
    if obj.loss_name == "cross_entropy" and f.dim() == 2:
        p = torch.softmax(f2, dim=1)
        return torch.diag_embed(p) - p.unsqueeze(2) * p.unsqueeze(1)
    return obj.output_hessians(f, y).reshape(m, k, k)


class GGNTooLarge(Exception):
    """The K x K Gauss-Newton blocks of all examples do not fit in the memory budget."""


class GGNMoments:
    """Gauss-Newton H, H^2 and S products with precomputed Jacobian Gram blocks (see module docstring).

    Memory: the blocks take 3 K^2 numbers per example (K outputs per example: K = T x V for a sequence model)
    and computing them K x the layer outputs per example at once. Both are estimated from one example's
    forward pass before anything is built (``gram_memory``): the examples go through the K backward passes in
    groups small enough for ``memory_budget`` bytes (default :data:`GGN_MEMORY`), and when the stored blocks
    alone exceed it, :class:`GGNTooLarge` is raised (``moments`` then falls back to the exact engine and
    says so). ``self.memory`` records the estimate and the group size.
    """

    def __init__(self, obj, memory_budget: int | None = None) -> None:
        obj._require_eval_bn("GGN non-uniformity")
        self.obj = obj
        self.method = "ggn"
        budget = GGN_MEMORY if memory_budget is None else int(memory_budget)
        k_out, stored, transient = gram_memory(obj)
        n_local = getattr(obj, "n_local", obj.n)  # with dist= each process holds the blocks of its shard
        blocks = stored * n_local
        if blocks + transient > budget:
            raise GGNTooLarge(
                f"the Gauss-Newton blocks need ~{_gb(blocks + transient)} (n={n_local} examples x "
                f"{k_out}^2 outputs x 3) > memory_budget {_gb(budget)}"
            )
        at_once = int(min(n_local, max(1, (budget - blocks) // max(transient, 1))))
        self.memory = {
            "outputs_per_example": k_out,
            "blocks_bytes": blocks,
            "sensitivity_bytes_per_example": transient,
            "examples_at_once": at_once,
            "estimated_peak_bytes": blocks + at_once * transient,
            "memory_budget": budget,
        }
        self._chunks = list(obj.chunks())
        self._q: list[Tensor] = []
        self._c: list[Tensor] = []
        self._cached = [_Linearization(obj, x) for x, _ in self._chunks] if len(self._chunks) == 1 else None
        for x, y in self._chunks:
            with torch.no_grad():
                f = obj.outputs_fn(obj.theta, x)
            q = _output_hessians(obj, f, y)
            m = jacobian_gram_blocks(obj, x, max_examples=at_once)
            self._q.append(q)
            self._c.append(q @ m @ q)

    def _lin(self, i: int) -> _Linearization:
        return self._cached[i] if self._cached is not None else _Linearization(self.obj, self._chunks[i][0])

    def hvp(self, v: Tensor) -> Tensor:
        return self.combo(v, 1.0, 0.0, 0.0)

    def combo(self, v: Tensor, ch: float, chh: float, cs: float) -> Tensor:
        n = self.obj.n
        lins = [self._lin(i) for i in range(len(self._chunks))]
        ws = [lin.jvp(v) for lin in lins]
        local = sum(
            lin.vjp(torch.einsum("mkl,ml->mk", q, w)) for lin, q, w in zip(lins, self._q, ws, strict=True)
        )
        gv = self.obj.allreduce(local) / n
        out = ch * gv
        if chh == 0.0 and cs == 0.0:
            return out
        rest = torch.zeros_like(v)
        for lin, q, c, w in zip(lins, self._q, self._c, ws, strict=True):
            cot = torch.zeros_like(w)
            if chh:
                cot += chh * torch.einsum("mkl,ml->mk", q, lin.jvp(gv))
            if cs:
                cot += cs * torch.einsum("mkl,ml->mk", c, w)
            rest += lin.vjp(cot)
        return out + self.obj.allreduce(rest) / n


def moments(obj, method: str, chunk_size: int | None = None, memory_budget: int | None = None):
    """The product engine for ``method``: "ggn" -> :class:`GGNMoments`; "exact" -> the Gram engine of
    ``sigma_gram.py`` when every selected parameter sits in a Linear / Conv2d layer (a few full-data passes
    per product), else :class:`ExactMoments` (vmap over examples); "exact-vmap" forces the latter.

    When the Gauss-Newton blocks would not fit in ``memory_budget`` bytes (default :data:`GGN_MEMORY`),
    "ggn" falls back to the exact engine with a RuntimeWarning; the engine's ``fallback`` attribute says why.
    """
    if method == "ggn":
        try:
            return GGNMoments(obj, memory_budget)
        except GGNTooLarge as exc:
            warnings.warn(
                f"non-uniformity: {exc}; using the exact engine instead (raise memory_budget= to force ggn)",
                RuntimeWarning,
                stacklevel=3,
            )
            engine = moments(obj, "exact", chunk_size)
            engine.fallback = str(exc)
            return engine
    if method == "exact":
        from .sigma_gram import GramExactMoments, Unsupported

        try:
            return GramExactMoments(obj)
        except Unsupported:
            pass
    return ExactMoments(obj, chunk_size)


class SigmaOperator(LinearOperator):
    """Sigma v = (1/n) sum_i H_i^2 v - H^2 v (Wu, Ma & E 2018, Def. 3); ``method`` "exact" or "ggn"."""

    def __init__(self, obj, method: str = "exact", engine: ExactMoments | GGNMoments | None = None) -> None:
        super().__init__(obj.num_params, obj.dtype, obj.device)
        self.engine = engine or moments(obj, method)

    def _matvec(self, v: Tensor) -> Tensor:
        return self.engine.combo(v, 0.0, -1.0, 1.0)

    def _matmat(self, v: Tensor) -> Tensor:
        block = getattr(self.engine, "combo_block", None)
        return block(v, 0.0, -1.0, 1.0) if block is not None else super()._matmat(v)
