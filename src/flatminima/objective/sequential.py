"""Exact Hessian products for plain MLPs by Pearlmutter's R-operator, with whole-block matrix products.

For a model that is an ``nn.Sequential`` of ``nn.Linear`` layers and pointwise activations (ReLU, LeakyReLU,
Tanh, Sigmoid, Identity, Dropout, which is off while measuring; an optional leading ``nn.Flatten``), the
Hessian-vector product H v of I(theta) = (1/n) sum_i l_i is computed in closed form (Pearlmutter 1994, "Fast
exact multiplication by the Hessian"; the R-operator R{.} = d/dr (.)(theta + r v) at r = 0) instead of by a
double backward pass through autograd's graph. With z_l = a_{l-1} W_l^T + b_l, a_l = sigma(z_l), f = z_L,
g_l = dI/dz_l and e_l = dI/da_l = g_{l+1} W_{l+1}:

    R z_l  = a_{l-1} V_l^T + c_l + R a_{l-1} W_l^T,           R a_l = sigma'(z_l) * R z_l,
    R g_L  = Q R f / n   (Q_i = d^2 l_i / d f^2, ``Objective.output_hessians``),
    R e_{l-1} = R g_l W_l + g_l V_l,
    R g_{l-1} = sigma'(z_{l-1}) * R e_{l-1} + sigma''(z_{l-1}) * e_{l-1} * R z_{l-1},
    (H v)_{W_l} = R g_l^T a_{l-1} + g_l^T R a_{l-1},           (H v)_{b_l} = sum_i R g_l,

where (V_l, c_l) is the part of v on (W_l, b_l). The forward quantities (a, z, sigma', sigma'', g, e) are
computed once per base point and kept; a block of b vectors then costs a handful of matrix products whose
b columns are stacked into one GEMM each (e.g. a_{l-1} [n, d_in] times the b weight directions as one
[d_in, b d_out] matrix). Terms that vanish are skipped: the input has R a_0 = 0, so the first layer costs two
matrix products per vector, the others six. Measured (benchmarks/RESULTS.md): faster than the double backward
for single vectors and on a 784-256-256-10 MLP; in blocks on 784-500-500-500-10 a tie.

Parameters left out of the objective's selection (``params=``) are held fixed (zero direction); products
are returned only for the selected ones, in the objective's flat order. Anything else (convolutions,
normalisation, other activations, hooks, loaders, dict inputs) uses the generic autograd path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .losses import _cross_entropy, _mse

__all__ = ["MLPPlan", "mlp_plan"]

_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid)


@dataclass(frozen=True)
class _Layer:
    """One Linear layer: parameter names, where its selected parameters sit in theta, the activation after."""

    weight: str
    bias: str | None
    w_slice: slice | None  # None: held fixed
    b_slice: slice | None
    shape: tuple[int, int]  # (d_out, d_in)
    act: nn.Module | None  # None after the last layer (and between two Linear layers)

    @property
    def active(self) -> bool:
        """Whether any of this layer's parameters is selected."""
        return self.w_slice is not None or self.b_slice is not None


@dataclass
class _Primal:
    """Forward/backward quantities at one base point (see the module docstring)."""

    weights: list[Tensor]
    inputs: list[Tensor]  # a_{l-1}, [n, d_in]
    slopes: list[Tensor | None]  # sigma'(z_l) after layer l (None: identity)
    curvatures: list[Tensor | None]  # sigma''(z_l) (None: zero)
    grads: list[Tensor]  # g_l = dI/dz_l, [n, d_out]
    upstream: list[Tensor | None]  # e_l = dI/da_l (where sigma'' is used)
    out_hess: Tensor | float  # Q_i (or the scalar of Q = q I for MSE)
    n_total: int  # the objective's n (I is a mean over all examples, not over this chunk's)
    value: Tensor  # sum of this chunk's losses / n_total


def _derivatives(act: nn.Module | None, z: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(sigma(z), sigma'(z), sigma''(z)); None for a derivative that is 1 (identity) or 0."""
    if act is None:
        return z, None, None
    if isinstance(act, nn.ReLU):
        return torch.relu(z), (z > 0).to(z.dtype), None
    if isinstance(act, nn.LeakyReLU):
        slope = torch.where(z > 0, torch.ones_like(z), torch.full_like(z, act.negative_slope))
        return z * slope, slope, None
    if isinstance(act, nn.Tanh):
        t = torch.tanh(z)
        d = 1 - t * t
        return t, d, -2 * t * d
    s = torch.sigmoid(z)  # nn.Sigmoid
    d = s * (1 - s)
    return s, d, d * (1 - 2 * s)


def _layers(model: nn.Module) -> tuple[bool, list[tuple[str, nn.Linear, nn.Module | None]]] | None:
    """(leading Flatten?, [(name, Linear, activation after)]) for a plain MLP, else None."""
    if type(model) is not nn.Sequential or any(_hooked(m) for m in model.modules()):
        return None  # forward hooks could change what the model computes: the generic path runs them
    children = list(model.named_children())
    flatten = bool(children) and type(children[0][1]) is nn.Flatten
    if flatten:
        f = children[0][1]
        if (f.start_dim, f.end_dim) != (1, -1):
            return None
        children = children[1:]
    out: list[tuple[str, nn.Linear, nn.Module | None]] = []
    for name, m in children:
        if type(m) in (nn.Identity, nn.Dropout):  # identities while measuring (dropout is off)
            continue
        if type(m) is nn.Linear:
            out.append((name, m, None))
        elif type(m) in _ACTIVATIONS and out and out[-1][2] is None:
            out[-1] = (out[-1][0], out[-1][1], m)
        else:
            return None
    if not out or out[-1][2] is not None:
        return None  # the last Linear gives the outputs (an activation after it is not supported here)
    return flatten, out


def _hooked(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


class MLPPlan:
    """The R-operator products of one plain MLP for an objective's parameter selection (see module doc)."""

    def __init__(self, flatten: bool, layers: list[_Layer], size: int) -> None:
        self.flatten, self.layers, self.size = flatten, layers, size
        self.first_active = min(i for i, lay in enumerate(layers) if lay.active)

    def primal(
        self, fixed: dict[str, Tensor], theta: Tensor, x: Tensor, obj: Any, targets: Tensor
    ) -> _Primal:
        """Forward and backward pass at ``theta`` on ``(x, targets)``; ``fixed``: the unselected parameters,
        ``obj``: the Objective (its per-example loss, output Hessians and n)."""
        with torch.no_grad():
            weights = [_param(theta, fixed, lay.weight, lay.w_slice, lay.shape) for lay in self.layers]
            biases = [
                None if lay.bias is None else _param(theta, fixed, lay.bias, lay.b_slice, (lay.shape[0],))
                for lay in self.layers
            ]
            a = (x.reshape(len(x), -1) if self.flatten else x).to(theta.dtype)
            inputs, slopes, curvatures = [], [], []
            for lay, w, b in zip(self.layers, weights, biases, strict=True):
                inputs.append(a)
                z = a @ w.T if b is None else torch.addmm(b, a, w.T)
                a, d, dd = _derivatives(lay.act, z)
                slopes.append(d)
                curvatures.append(dd)
        f = a.detach().requires_grad_(True)
        with torch.enable_grad():
            value = obj._loss(f, targets).sum() / obj.n
            (g,) = torch.autograd.grad(value, f)
        out_hess: Tensor | float
        if obj._loss is _mse:  # Q = (2/K) I, kept as the scalar
            out_hess = 2.0 / f.shape[1]
        else:
            out_hess = obj.output_hessians(f.detach(), targets)
            if obj._loss is _cross_entropy and targets.is_floating_point():  # rows that need not sum to 1
                out_hess = out_hess * targets.to(out_hess.dtype).sum(dim=1).view(-1, 1, 1)
        grads: list[Tensor] = [g]
        upstream: list[Tensor | None] = [None] * len(self.layers)
        with torch.no_grad():
            for i in range(len(self.layers) - 1, self.first_active, -1):
                e = grads[0] @ weights[i]  # dI/da_{i-1}
                upstream[i - 1] = e if curvatures[i - 1] is not None else None
                grads.insert(0, _scale(e, slopes[i - 1]))
        grads = [torch.empty(0)] * (len(self.layers) - len(grads)) + grads
        return _Primal(weights, inputs, slopes, curvatures, grads, upstream, out_hess, obj.n, value.detach())

    def gradient(self, p: _Primal) -> Tensor:
        """dI/dtheta of the selected parameters at the primal point (backpropagation: g_l^T a_{l-1} and
        sum_i g_l for the weights and biases)."""
        out = torch.empty(self.size, dtype=p.inputs[0].dtype, device=p.inputs[0].device)
        for i in range(self.first_active, len(self.layers)):
            lay = self.layers[i]
            if lay.w_slice is not None:
                out[lay.w_slice] = (p.grads[i].T @ p.inputs[i]).reshape(-1)
            if lay.b_slice is not None:
                out[lay.b_slice] = p.grads[i].sum(dim=0)
        return out

    def hvp_block(self, p: _Primal, V: Tensor) -> Tensor:
        """H V for V of shape [size, b] at the primal point ``p`` (sum over its examples / the objective's n).

        Intermediates are laid out [n, b, d] so that each term is one matrix product over all b columns.
        """
        b = V.shape[1]
        n = p.inputs[0].shape[0]
        dirs_w = [None if la.w_slice is None else _block_view(V, la.w_slice, la.shape) for la in self.layers]
        rz: list[Tensor | None] = []  # R z_l, [n, b, d_out]
        ra: Tensor | None = None  # R a_{l-1}
        for i, lay in enumerate(self.layers):
            terms = _r_z(p, i, lay, V, dirs_w[i], ra)
            rz.append(terms)
            ra = None if terms is None else _times(terms, p.slopes[i])
        rf = rz[-1]
        assert rf is not None  # the last layer is downstream of an active one
        if isinstance(p.out_hess, float):
            rg = rf * (p.out_hess / p.n_total)
        else:
            rg = torch.einsum("nkl,nbl->nbk", p.out_hess, rf) / p.n_total
        out = torch.empty_like(V)
        for i in range(len(self.layers) - 1, self.first_active - 1, -1):
            lay = self.layers[i]
            d_out, d_in = lay.shape
            below = rz[i - 1] if i > 0 else None
            if lay.w_slice is not None:
                hw = (rg.reshape(n, b * d_out).T @ p.inputs[i]).view(b, d_out, d_in)
                if below is not None:  # g_l^T R a_{l-1}: [d_out, n] @ [n, b d_in]
                    t = p.grads[i].T @ _times(below, p.slopes[i - 1]).reshape(n, b * d_in)
                    hw = hw + t.view(d_out, b, d_in).transpose(0, 1)
                out[lay.w_slice] = hw.reshape(b, d_out * d_in).T
            if lay.b_slice is not None:
                out[lay.b_slice] = rg.sum(dim=0).T
            if i == self.first_active:
                break
            re = (rg.reshape(n * b, d_out) @ p.weights[i]).view(n, b, d_in)  # R e_{l-1} = R g_l W_l + g_l V_l
            if dirs_w[i] is not None:
                gv = p.grads[i] @ dirs_w[i].transpose(0, 1).reshape(d_out, b * d_in)
                re = re + gv.view(n, b, d_in)
            rg = _times(re, p.slopes[i - 1])
            if p.curvatures[i - 1] is not None and below is not None:
                rg = rg + (p.upstream[i - 1] * p.curvatures[i - 1]).unsqueeze(1) * below
        return out

    def quadratic_forms(self, p: _Primal, V: Tensor) -> Tensor:
        """v_j^T H v_j for the b columns of V [size, b], float64 [b], by second-order forward mode.

        v^T H v = d^2/dr^2 I(theta + r v) at r = 0 (Taylor mode, no backward pass): with R z_l as in
        :meth:`hvp_block` and S{.} = d^2/dr^2 (.),

            S z_l = S a_{l-1} W_l^T + 2 R a_{l-1} V_l^T,   S a_l = sigma'(z_l) S z_l + sigma''(z_l) (R z_l)^2,
            v^T H v = sum_i (R f_i)^T (Q_i / n) R f_i + g_L,i . S f_i,

        where g_L = dI/df. A form costs about half of one product H v (the first layer, with R a_0 = 0 and
        S a_0 = 0, needs one matrix product); Hutchinson and two thirds of Hutch++ need only these.
        """
        rz: Tensor | None = None
        ra: Tensor | None = None  # R a_{l-1}, [n, b, d_in]
        sa: Tensor | None = None  # S a_{l-1}
        for i, lay in enumerate(self.layers):
            vw = None if lay.w_slice is None else _block_view(V, lay.w_slice, lay.shape)
            sz = None
            if vw is not None and ra is not None:  # 2 R a_{l-1} V_l^T, one product per column
                sz = 2 * torch.bmm(ra.transpose(0, 1), vw.transpose(1, 2)).transpose(0, 1)
            if sa is not None:
                t = _through(sa, p.weights[i])
                sz = t if sz is None else sz + t
            rz = _r_z(p, i, lay, V, vw, ra)
            if i == len(self.layers) - 1:
                break
            ra = None if rz is None else _times(rz, p.slopes[i])
            sa = None if sz is None else _times(sz, p.slopes[i])
            if p.curvatures[i] is not None and rz is not None:
                t = p.curvatures[i].unsqueeze(1) * rz * rz
                sa = t if sa is None else sa + t
        assert rz is not None  # the last layer is downstream of an active one
        rf = rz.to(torch.float64)
        if isinstance(p.out_hess, float):
            forms = (rf * rf).sum(dim=(0, 2)) * (p.out_hess / p.n_total)
        else:
            q = p.out_hess.to(torch.float64)
            forms = torch.einsum("nbk,nkl,nbl->b", rf, q, rf) / p.n_total
        if sz is not None:
            forms = forms + torch.einsum("nk,nbk->b", p.grads[-1].to(torch.float64), sz.to(torch.float64))
        return forms


def _r_z(p: _Primal, i: int, lay: _Layer, V: Tensor, vw: Tensor | None, ra: Tensor | None) -> Tensor | None:
    """R z_l = a_{l-1} V_l^T + R a_{l-1} W_l^T + (V's bias block), [n, b, d_out] (None: zero), for layer ``i``
    with its weight directions ``vw`` [b, d_out, d_in] and ``ra`` = R a_{l-1} [n, b, d_in]."""
    n, b, d_out = p.inputs[i].shape[0], V.shape[1], lay.shape[0]
    rz = None
    if vw is not None:  # a_{l-1} V_l^T for all b at once: [n, d_in] @ [d_in, b d_out]
        rz = (p.inputs[i] @ vw.view(b * d_out, lay.shape[1]).T).view(n, b, d_out)
    if ra is not None:
        t = _through(ra, p.weights[i])
        rz = t if rz is None else rz + t
    if lay.b_slice is not None:
        t = V[lay.b_slice].T  # [b, d_out], broadcast over the examples
        rz = t.expand(n, b, d_out) if rz is None else rz + t
    return rz


def _through(t: Tensor, w: Tensor) -> Tensor:
    """t [n, b, d_in] times W^T: [n, b, d_out], one matrix product over all examples and columns."""
    n, b, d_in = t.shape
    return (t.reshape(n * b, d_in) @ w.T).view(n, b, w.shape[0])


def _scale(t: Tensor, factor: Tensor | None) -> Tensor:
    return t if factor is None else t * factor


def _times(t: Tensor, per_example: Tensor | None) -> Tensor:
    """t [n, b, d] times a per-example factor [n, d] (None: 1)."""
    return t if per_example is None else t * per_example.unsqueeze(1)


def _param(theta: Tensor, tensors: dict[str, Tensor], name: str, where: slice | None, shape) -> Tensor:
    return tensors[name] if where is None else theta[where].view(shape)


def _block_view(V: Tensor, where: slice, shape: tuple[int, int]) -> Tensor:
    """The b directions of one weight matrix, [b, d_out, d_in]."""
    return V[where].T.reshape(V.shape[1], *shape).contiguous()


def mlp_plan(model: nn.Module, param_names: list[str], param_sizes: list[int]) -> MLPPlan | None:
    """The structured product plan for ``model`` with the selected parameters, or None if it does not apply.

    Applies when the model is an ``nn.Sequential`` of Linear layers and the supported pointwise activations
    (module docstring), every parameter of the model belongs to one of its Linear layers, and at least one is
    selected.
    """
    found = _layers(model)
    if found is None:
        return None
    flatten, raw = found
    offsets, pos = {}, 0
    for name, size in zip(param_names, param_sizes, strict=True):
        offsets[name] = slice(pos, pos + size)
        pos += size
    known = set()
    layers = []
    for name, lin, act in raw:
        w, b = f"{name}.weight", f"{name}.bias" if lin.bias is not None else None
        known.update(k for k in (w, b) if k)
        shape = (lin.out_features, lin.in_features)
        layers.append(_Layer(w, b, offsets.get(w), offsets.get(b) if b else None, shape, act))
    outside = {k for k, _ in model.named_parameters()} != known  # a parameter outside the Linear layers
    if outside or not any(lay.active for lay in layers):
        return None
    return MLPPlan(flatten, layers, pos)
