"""Exact S v = (1/n) sum_i H_i^2 v without per-example vectors, for parameters in Linear / Conv2d layers.

With g_i(theta) the per-example gradient, let phi(theta', theta'') = (1/n) sum_i <g_i(theta'), g_i(theta'')>.
Its mixed second derivative at theta' = theta'' = theta is (1/n) sum_i H_i^T H_i = S, so

    S v = grad_{theta'} < grad_{theta''} phi(theta', theta''), v >.

For a Linear layer g_i = (D_i a_i^T, D_i) with D_i = d l_i / d z_i the sensitivity at the layer output and a_i
the layer input, so <g_i', g_i''> = (D_i' . D_i'')(a_i' . a_i'' + 1): phi needs only the batched forward and
backward quantities (D and a for all examples at once), never an n x p array. Weight-shared positions
(Linear on [n, T, in], Conv2d via unfold) use sum_{t,s} (D_it' . D_is'')(a_it' . a_is'') (T x T per
example) or, when that is larger (a convolution's T^2 against its kernel), the per-example weight gradients
sum_t D_it a_it^T (out x in per example). The graph of
grad_{theta''} phi is built once (double backward); each S product is one more backward pass through it.

Cost per product, measured (benchmarks/RESULTS.md): S v ~ 1.5-2 HVPs on an MLP; Sigma v = S v - H (H v)
adds two HVPs. A fused variant (H v and H^2 v as mixed derivatives in the same graph, one backward pass for
the whole combination) was measured and cost as much as S v plus two HVPs, so it was not kept.
Exactness does not depend on the loss or on interpolation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .jacobian_gram import _patches, _sensitivities, covered_params, recorded_forward, weight_layers

__all__ = ["GramExactMoments", "Unsupported"]


class Unsupported(ValueError):
    """The model has selected parameters outside Linear / Conv2d layers (use the vmap engine)."""


def _per_example_cheaper(t: int, size_in: int, size_out: int) -> bool:
    """Per-example weight gradients (out x in each) cost less than the T x T position products."""
    return t * (size_in + size_out) > 2 * size_in * size_out


def _pair_term(module, a1: Tensor, d1: Tensor, a2: Tensor, d2: Tensor, use_w: bool, use_b: bool) -> Tensor:
    """sum_i <g_i(theta'), g_i(theta'')> over this layer's selected parameters."""
    a1, a2 = _patches(module, a1), _patches(module, a2)  # [n, T, in]
    d1, d2 = _sensitivities(module, d1), _sensitivities(module, d2)  # [n, T, out]
    if a1.shape[1] == 1:
        dd = (d1[:, 0] * d2[:, 0]).sum(-1)
        aa = (a1[:, 0] * a2[:, 0]).sum(-1)
        return (dd * (aa * float(use_w) + float(use_b))).sum()
    total = d1.new_zeros(())
    if use_w and _per_example_cheaper(a1.shape[1], a1.shape[2], d1.shape[2]):  # [n, out, in] each
        g1, g2 = torch.einsum("nto,nti->noi", d1, a1), torch.einsum("nto,nti->noi", d2, a2)
        total = total + (g1 * g2).sum()
    elif use_w:
        total = total + (torch.einsum("nto,nso->nts", d1, d2) * torch.einsum("nti,nsi->nts", a1, a2)).sum()
    if use_b:
        total = total + (d1.sum(1) * d2.sum(1)).sum()
    return total


class _ChunkGraph:
    """grad_{theta''} phi on one chunk, kept with its graph so that products are one backward pass each."""

    def __init__(self, obj, layers, x: Tensor, y: Tensor) -> None:
        self.t1 = obj.theta.detach().clone().requires_grad_(True)
        t2 = obj.theta.detach().clone().requires_grad_(True)
        names = list(layers)
        with torch.enable_grad():
            sides = []
            for t in (self.t1, t2):
                f, records = recorded_forward(obj, t, x, layers)
                if any(len(records[k]) != 1 for k in names):
                    raise Unsupported("a layer is called more than once per forward pass")
                total = obj.loss_fn(f, y).sum()
                outs = [records[k][0][1] for k in names]
                ds = torch.autograd.grad(total, outs, create_graph=True)
                sides.append(([records[k][0][0] for k in names], ds))
            (a1s, d1s), (a2s, d2s) = sides
            phi = (
                sum(
                    _pair_term(layers[k][0], a1, d1, a2, d2, layers[k][1], layers[k][2])
                    for k, a1, d1, a2, d2 in zip(names, a1s, d1s, a2s, d2s, strict=True)
                )
                / obj.n
            )
            (self.psi,) = torch.autograd.grad(phi, t2, create_graph=True)

    def product(self, v: Tensor) -> Tensor:
        (sv,) = torch.autograd.grad(self.psi, self.t1, grad_outputs=v, retain_graph=True, allow_unused=True)
        return torch.zeros_like(v) if sv is None else sv

    def product_block(self, v: Tensor) -> Tensor:
        """S V for a block [p, b] (batched backward; column by column where batching fails)."""
        try:
            (sv,) = torch.autograd.grad(
                self.psi, self.t1, v.T, retain_graph=True, allow_unused=True, is_grads_batched=True
            )
        except RuntimeError:
            return torch.stack([self.product(c) for c in v.T], dim=1)
        return torch.zeros_like(v) if sv is None else sv.T


class GramExactMoments:
    """Exact H, H^2 and S products (see module docstring); raises :class:`Unsupported` for other layers."""

    def __init__(self, obj) -> None:
        obj._require_eval_bn("exact non-uniformity (per-example Hessians)")
        self.obj = obj
        self.method = "exact"
        self.layers = weight_layers(obj)
        missing = [k for k in obj.param_names if k not in covered_params(self.layers)]
        if missing:
            raise Unsupported(f"parameters outside Linear/Conv2d layers: {', '.join(missing)}")
        self._chunks = list(obj.chunks())
        self._graphs = [self._graph(0)] if len(self._chunks) == 1 else None

    def _graph(self, i: int) -> _ChunkGraph:
        x, y = self._chunks[i]
        return _ChunkGraph(self.obj, self.layers, x, y)

    def _each(self):
        if self._graphs is not None:
            return self._graphs
        return (self._graph(i) for i in range(len(self._chunks)))

    def hvp(self, v: Tensor) -> Tensor:
        return self.obj.hvp(v)

    def second_moment(self, v: Tensor) -> Tensor:
        """S v = (1/n) sum_i H_i (H_i v)."""
        return self.obj.allreduce(sum(g.product(v) for g in self._each()))

    def combo(self, v: Tensor, ch: float, chh: float, cs: float) -> Tensor:
        """ch H v + chh H (H v) + cs S v."""
        out = torch.zeros_like(v)
        if ch or chh:
            hv = self.obj.hvp(v)
            out += ch * hv
            if chh:
                out += chh * self.obj.hvp(hv)
        if cs:
            out += cs * self.second_moment(v)
        return out

    def combo_block(self, v: Tensor, ch: float, chh: float, cs: float) -> Tensor:
        """:meth:`combo` for a block [p, b]: S V by a batched backward, H V and H (H V) by block HVPs."""
        out = torch.zeros_like(v)
        if ch or chh:
            hv = _hvp_block(self.obj, v)
            out += ch * hv
            if chh:
                out += chh * _hvp_block(self.obj, hv)
        if cs:
            out += cs * self.obj.allreduce(sum(g.product_block(v) for g in self._each()))
        return out


def _hvp_block(obj, v: Tensor) -> Tensor:
    """H V with the objective's block product where it has one."""
    block = getattr(obj, "hvp_block", None)
    return block(v) if block is not None else torch.stack([obj.hvp(c) for c in v.T], dim=1)
