"""The Objective: a model, a loss and a fixed data set seen as a function of a flat parameter vector.

Everything that measures a network goes through an Objective. With theta the flat vector of the selected
parameters (``model.named_parameters()`` order) and l_i the per-example loss,

    I(theta) = (1/n) sum_i l_i(theta),

the Objective gives the value, the gradient, Hessian-vector products H v, Gauss-Newton products
G v = (1/n) sum_i J_i^T Q_i J_i v (J_i = d f(x_i)/d theta, Q_i = d^2 l_i / d f^2), and per-example products
(H_i v, per-example gradients) used by the non-uniformity of Wu, Ma & E 2018 (Def. 3) and the diffusion matrix
of Chaudhari's thesis (Lemma 6.3). The data is processed in chunks of ``chunk_size`` examples to bound memory;
results do not depend on the chunking (except with ``bn="train"``, where batch statistics are per chunk).

Loss conventions (DESIGN.md; details in ``losses.py``): ``"mse"`` is the mean over all n*K entries
(``nn.MSELoss()``), so l_i = (1/K) ||f(x_i) - y_i||^2 (Wu, Ma & E 2018, Sec. 4); ``"cross_entropy"`` and
``"token_cross_entropy"`` (one sequence = one example) are means over examples; torch loss modules are
recognised and evaluated per example; a callable must return one loss per example (a scalar is refused).
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp, vjp, vmap

from ..errors import ConfigError
from .losses import LossFn, _cross_entropy, _mse, loss_name, per_example_loss

BNMode = Literal["eval", "train"]

__all__ = ["BNMode", "Objective"]


class Objective:
    """Functional view of ``model`` + ``loss`` on the fixed data ``(x, y)``.

    Parameters
    ----------
    model: the network. It is not modified; with ``dtype`` set, a converted copy is used.
    loss: ``"mse"`` | ``"cross_entropy"`` | ``"token_cross_entropy"`` | a torch loss module
        (``nn.MSELoss()``, ...) | callable ``(outputs, targets) -> per-example losses [m]`` (``losses.py``).
    x, y: inputs and targets (first dimension n). Moved to the model's device.
    chunk_size: examples per chunk (``None``: all at once).
    params: ``None`` (all trainable parameters) or a name pattern / list of patterns (``fnmatch``, e.g.
        ``"fc3.*"``) selecting the parameters the flat vector holds; the others are held fixed.
    bn: ``"eval"`` (default: running statistics, every product is exactly that of a fixed function) or
        ``"train"`` (batch statistics of each data chunk; results then depend on ``chunk_size``).
    dtype: optional dtype (e.g. ``torch.float64``) for model and data.
    theta: optional starting point (flat vector); default the model's current parameters.
    """

    def __init__(
        self,
        model: nn.Module,
        loss: str | LossFn = "mse",
        x: Tensor | None = None,
        y: Tensor | None = None,
        chunk_size: int | None = None,
        params: str | Sequence[str] | None = None,
        bn: BNMode = "eval",
        dtype: torch.dtype | None = None,
        theta: Tensor | None = None,
    ) -> None:
        if x is None or y is None:
            raise ConfigError("Objective needs data: pass x and y")
        if len(x) != len(y):
            raise ConfigError(f"x and y disagree on the number of examples: {len(x)} vs {len(y)}")
        if len(x) == 0:
            raise ConfigError("Objective needs at least one example")
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size must be a positive integer, got {chunk_size}")
        if bn not in ("eval", "train"):
            raise ConfigError(f"bn must be 'eval' or 'train', got {bn!r}")
        first = next(model.parameters(), None)
        if first is None:
            raise ConfigError("the model has no parameters")
        if dtype is not None and first.dtype != dtype:
            model = copy.deepcopy(model).to(dtype)
        self.model = model
        self.loss_name = loss_name(loss)
        self._loss = per_example_loss(loss)
        self.bn: BNMode = bn
        self.chunk_size = chunk_size
        self.device = first.device
        self.dtype = dtype or first.dtype
        self.x = x.to(self.device, self.dtype if x.is_floating_point() else x.dtype)
        self.y = y.to(self.device, self.dtype if y.is_floating_point() else y.dtype)

        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        patterns = [params] if isinstance(params, str) else list(params) if params is not None else None
        if patterns is not None:
            active = [(k, p) for k, p in named if any(fnmatch.fnmatchcase(k, pat) for pat in patterns)]
            if not active:
                names = ", ".join(k for k, _ in named)
                raise ConfigError(f"params={params!r} matches no parameter; the model has: {names}")
        else:
            active = named
        self.param_names: list[str] = [k for k, _ in active]
        self.param_shapes: list[torch.Size] = [p.shape for _, p in active]
        self.param_sizes: list[int] = [p.numel() for _, p in active]
        active_set = set(self.param_names)
        self._fixed: dict[str, Tensor] = {
            k: p.detach() for k, p in model.named_parameters() if k not in active_set
        }
        self._fixed.update({k: b.detach() for k, b in model.named_buffers()})
        base = torch.cat([p.detach().reshape(-1) for _, p in active])
        self.theta: Tensor = base.clone() if theta is None else self._check_vec(theta).clone()
        if not bool(torch.isfinite(self.theta).all()):
            raise ConfigError("the parameters contain NaN or inf (a diverged run?): nothing to measure")
        self._graph_cache: tuple[Tensor, Tensor, Tensor] | None = None
        self._forward_ad = True  # cleared when the model has an op without a forward-mode derivative

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        """Number of examples."""
        return len(self.x)

    @property
    def loss_fn(self) -> LossFn:
        """The per-example loss ``(outputs, targets) -> [m]`` this objective averages."""
        return self._loss

    @property
    def num_params(self) -> int:
        """Length of the flat parameter vector (selected parameters only)."""
        return int(self.theta.numel())

    def __repr__(self) -> str:
        return (
            f"Objective(loss={self.loss_name!r}, n={self.n}, num_params={self.num_params}, "
            f"chunk_size={self.chunk_size}, bn={self.bn!r}, dtype={self.dtype})"
        )

    def _check_vec(self, v: Tensor) -> Tensor:
        p = sum(self.param_sizes)
        if tuple(v.shape) != (p,):
            raise ConfigError(f"vector of shape {tuple(v.shape)} does not match num_params={p}")
        return v.to(self.device, self.dtype)

    def _check_block(self, V: Tensor) -> Tensor:
        p = sum(self.param_sizes)
        if V.dim() != 2 or V.shape[0] != p:
            raise ConfigError(f"block of shape {tuple(V.shape)} does not match [num_params={p}, b]")
        return V.to(self.device, self.dtype)

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split a flat vector into a ``{name: tensor}`` dict of the selected parameters (views)."""
        return {
            k: t.view(s)
            for k, t, s in zip(
                self.param_names, torch.split(theta, self.param_sizes), self.param_shapes, strict=True
            )
        }

    def flatten(self, tensors: dict[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter tensors (dict by name, or a sequence in order) into a flat vector."""
        if isinstance(tensors, dict):
            tensors = [tensors[k] for k in self.param_names]
        return torch.cat([t.reshape(-1) for t in tensors])

    def layer_slices(self) -> dict[str, slice]:
        """Position of each selected parameter inside the flat vector."""
        out, start = {}, 0
        for k, size in zip(self.param_names, self.param_sizes, strict=True):
            out[k] = slice(start, start + size)
            start += size
        return out

    def state_dict(self, theta: Tensor | None = None) -> dict[str, Tensor]:
        """Full ``state_dict`` of the model with the selected parameters set to ``theta``."""
        theta = self.theta if theta is None else theta
        sd = dict(self._fixed)
        sd.update(self.unflatten(theta))
        return {k: v.detach().clone() for k, v in sd.items()}

    def at(self, theta: Tensor) -> Objective:
        """The same objective (same data, loss, selection) based at another parameter vector."""
        other = copy.copy(self)
        other.theta = self._check_vec(theta).detach().clone()
        other._graph_cache = None
        return other

    def subset(self, index: Tensor | Sequence[int]) -> Objective:
        """The same objective on a subset of the examples (for ``subsamples=`` repeats and minibatches)."""
        other = copy.copy(self)
        idx = torch.as_tensor(index, device=self.device, dtype=torch.long)
        other.x, other.y = self.x[idx], self.y[idx]
        other._graph_cache = None
        return other

    def chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Iterate over ``(x, y)`` chunks of at most ``chunk_size`` examples."""
        size = self.chunk_size or self.n
        for start in range(0, self.n, size):
            yield self.x[start : start + size], self.y[start : start + size]

    # ------------------------------------------------------------------ functional core
    def outputs_fn(self, theta: Tensor, x: Tensor) -> Tensor:
        """Network outputs f(x; theta) as a pure function of the flat vector (usable under torch.func)."""
        tensors = dict(self._fixed)
        tensors.update(self.unflatten(theta))
        was_training = self.model.training
        self.model.train(self.bn == "train")
        try:
            if self.bn == "train":
                # Batch statistics without touching the model's running buffers.
                tensors.update({k: b.clone() for k, b in self.model.named_buffers()})
            return functional_call(self.model, tensors, (x,))
        finally:
            self.model.train(was_training)

    def losses_fn(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        """Per-example losses l_i(theta) on ``(x, y)`` (pure function)."""
        return self._loss(self.outputs_fn(theta, x), y)

    def _chunk_sum(self, theta: Tensor, x: Tensor, y: Tensor) -> Tensor:
        return self.losses_fn(theta, x, y).sum() / self.n

    def _single_loss(self, theta: Tensor, xi: Tensor, yi: Tensor) -> Tensor:
        return self.losses_fn(theta, xi.unsqueeze(0), yi.unsqueeze(0))[0]

    # ------------------------------------------------------------------ full-data quantities
    def losses(self, theta: Tensor | None = None) -> Tensor:
        """All per-example losses, shape ``[n]``."""
        theta = self.theta if theta is None else self._check_vec(theta)
        with torch.no_grad():
            return torch.cat([self.losses_fn(theta, x, y) for x, y in self.chunks()])

    def outputs(self, theta: Tensor | None = None) -> Tensor:
        """Network outputs on all examples."""
        theta = self.theta if theta is None else self._check_vec(theta)
        with torch.no_grad():
            return torch.cat([self.outputs_fn(theta, x) for x, _ in self.chunks()])

    def value(self, theta: Tensor | None = None) -> float:
        """I(theta) = (1/n) sum_i l_i(theta)."""
        return float(self._allreduce(self.losses(theta).sum()) / self.n)

    def grad(self, theta: Tensor | None = None) -> Tensor:
        """Full gradient (1/n) sum_i grad l_i(theta), shape ``[p]``."""
        theta = self.theta if theta is None else self._check_vec(theta)
        g = torch.zeros_like(theta)
        for x, y in self.chunks():
            g += grad(self._chunk_sum)(theta, x, y)
        return self._allreduce(g)

    def hvp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        """Hessian-vector product H v, H = (1/n) sum_i hess l_i(theta).

        Reverse-over-reverse (double backward, as PyHessian): at the base point with a single chunk the
        gradient graph is built once and reused, so each product is one backward pass through it; otherwise
        each chunk builds its gradient graph and runs one backward pass through it.
        """
        v = self._check_vec(v)
        return self.hvp_block(v.unsqueeze(1), theta)[:, 0]

    def hvp_block(self, V: Tensor, theta: Tensor | None = None) -> Tensor:
        """Block Hessian product H V for V of shape ``[p, b]`` (b vectors as columns), shape ``[p, b]``.

        Equal to ``b`` calls of :meth:`hvp` to rounding, but one graph serves the whole block: one batched
        backward pass (``is_grads_batched``) through the cached gradient graph at the base point with a
        single chunk, else through each chunk's gradient graph.
        """
        V = self._check_block(V)
        if V.shape[1] == 0:
            return V.clone()
        if theta is None and self._single_chunk():
            leaf, g = self._gradient_graph()
            return self._allreduce(_backward_block(g, leaf, V, retain=True))
        theta = self.theta if theta is None else self._check_vec(theta)
        out = torch.zeros_like(V)
        for x, y in self.chunks():
            leaf = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._chunk_sum(leaf, x, y), leaf, create_graph=True)
            out += _backward_block(g, leaf, V, retain=False)
        return self._allreduce(out)

    def _single_chunk(self) -> bool:
        return self.chunk_size is None or self.chunk_size >= self.n

    def _gradient_graph(self) -> tuple[Tensor, Tensor]:
        """(leaf, gradient with its graph) at the base point on all data (built once, see :meth:`hvp`)."""
        if self._graph_cache is None:
            leaf = self.theta.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self.losses_fn(leaf, self.x, self.y).mean()
                (g,) = torch.autograd.grad(loss, leaf, create_graph=True)
            self._graph_cache = (leaf, g, loss)
        leaf, g, _ = self._graph_cache
        return leaf, g

    def _chunk_ggn_block(self, theta: Tensor, x: Tensor, y: Tensor, V: Tensor) -> Tensor:
        """sum over the chunk of J_i^T Q_i J_i V / n.

        J V by forward-mode AD (vmapped over the columns when there are several), or, for models with an op
        that has no forward-mode derivative, by the double-backward trick J v = d/du <J^T u, v>; J^T U by one
        (batched) backward pass.
        """
        b = V.shape[1]
        leaf = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            f = self.outputs_fn(leaf, x)
        jv = self._jvp_block(theta, x, f, leaf, V)  # [b, *f.shape]
        m = len(f)
        q = self.output_hessians(f, y).reshape(m, f[0].numel(), -1)
        u = (torch.einsum("mkl,bml->bmk", q, jv.reshape(b, m, -1)) / self.n).reshape(b, *f.shape)
        return _backward_block(f, leaf, u.reshape(b, -1).T, retain=False)

    def _jvp_block(self, theta: Tensor, x: Tensor, f: Tensor, leaf: Tensor, V: Tensor) -> Tensor:
        """J V as ``[b, *f.shape]`` (see :meth:`_chunk_ggn_block`)."""
        if self._forward_ad:

            def fn(t: Tensor) -> Tensor:
                return self.outputs_fn(t, x)

            try:
                if V.shape[1] == 1:
                    return jvp(fn, (theta,), (V[:, 0],))[1].unsqueeze(0)
                return vmap(lambda v: jvp(fn, (theta,), (v,))[1], in_dims=1)(V)
            except NotImplementedError:  # "Trying to use forward AD with <op> that does not support it"
                self._forward_ad = False
        with torch.enable_grad():
            dummy = torch.zeros_like(f, requires_grad=True)
            (jt,) = torch.autograd.grad(f, leaf, dummy, create_graph=True)
        flat = _backward_block(jt, dummy, V, retain=True)  # [numel(f), b]
        return flat.T.reshape(V.shape[1], *f.shape)

    def _allreduce(self, t: Tensor) -> Tensor:
        """Sum a data-summed result over the processes that hold the other shards of the data.

        Every data-summing product (value, grad, hvp, ggn_vp, the block products, per-example sums) passes
        its result through here. Identity in a single process.
        """
        return t

    def clear_cache(self) -> None:
        """Drop the cached gradient graph (frees memory)."""
        self._graph_cache = None

    def output_hessians(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Per-example loss Hessians in output space Q_i = d^2 l_i / d f^2, shape ``[m, K, K]``.

        Closed forms for the built-in losses on ``[m, K]`` outputs (mse: (2/K) I, the Hessian of
        (1/K) ||f - y||^2; cross_entropy: diag(p) - p p^T with p = softmax(f)); autograd otherwise.
        """
        if outputs.dim() == 2 and self._loss is _mse:
            m, k = outputs.shape
            return (2.0 / k) * torch.eye(k, dtype=outputs.dtype, device=outputs.device).expand(m, k, k)
        if outputs.dim() == 2 and self._loss is _cross_entropy:
            prob = torch.softmax(outputs.detach(), dim=1)
            return torch.diag_embed(prob) - prob.unsqueeze(2) * prob.unsqueeze(1)

        def single(f: Tensor, t: Tensor) -> Tensor:
            return self._loss(f.unsqueeze(0), t.unsqueeze(0))[0]

        return vmap(torch.func.hessian(single), in_dims=(0, 0))(outputs.detach(), targets)

    def ggn_vp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        """Generalized Gauss-Newton product G v = (1/n) sum_i J_i^T Q_i J_i v.

        Equals H v at an interpolating minimum of MSE (the residual term vanishes); always positive
        semi-definite for convex losses in the outputs.
        """
        v = self._check_vec(v)
        return self.ggn_vp_block(v.unsqueeze(1), theta)[:, 0]

    def ggn_vp_block(self, V: Tensor, theta: Tensor | None = None) -> Tensor:
        """Block Gauss-Newton product G V for V of shape ``[p, b]``, shape ``[p, b]``.

        Per chunk: one forward pass kept with its graph, the b Jacobian-vector products J V (forward-mode,
        vmapped over the columns), Q_i applied per example, and one batched backward pass J^T U. Equal to
        ``b`` calls of :meth:`ggn_vp` to rounding.
        """
        V = self._check_block(V)
        theta = self.theta if theta is None else self._check_vec(theta)
        out = torch.zeros_like(V)
        if V.shape[1] == 0:
            return out
        for x, y in self.chunks():
            out += self._chunk_ggn_block(theta, x, y, V)
        return self._allreduce(out)

    # ------------------------------------------------------------------ per-example quantities
    def per_example_grads(self, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """Per-example gradients grad l_i for the examples ``(x, y)``, shape ``[m, p]`` (vmap).

        Requires ``bn="eval"`` (a single example has no batch statistics).
        """
        self._require_eval_bn("per-example gradients")
        theta = self.theta if theta is None else self._check_vec(theta)
        return vmap(grad(self._single_loss), in_dims=(None, 0, 0))(theta, x, y)

    def per_example_hvp(self, v: Tensor, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """Per-example Hessian-vector products H_i v_i, shape ``[m, p]``.

        ``v`` is one vector ``[p]`` (the same for every example) or one per example ``[m, p]``.
        Used for Sigma v = (1/n) sum_i H_i (H_i v) - H (H v) (Wu, Ma & E 2018, Def. 3).
        """
        self._require_eval_bn("per-example Hessian-vector products")
        theta = self.theta if theta is None else self._check_vec(theta)
        v = v.to(self.device, self.dtype)

        def forward_over_reverse(xi: Tensor, yi: Tensor, vi: Tensor) -> Tensor:
            return jvp(lambda t: grad(self._single_loss)(t, xi, yi), (theta,), (vi,))[1]

        def reverse_over_reverse(xi: Tensor, yi: Tensor, vi: Tensor) -> Tensor:  # H symmetric: v^T H = H v
            return vjp(lambda t: grad(self._single_loss)(t, xi, yi), theta)[1](vi)[0]

        in_dims = (0, 0, 0 if v.dim() == 2 else None)
        if self._forward_ad:
            try:
                return vmap(forward_over_reverse, in_dims=in_dims)(x, y, v)
            except NotImplementedError:  # an op without a forward-mode derivative
                self._forward_ad = False
        return vmap(reverse_over_reverse, in_dims=in_dims)(x, y, v)

    def _require_eval_bn(self, what: str) -> None:
        if self.bn != "eval":
            raise ConfigError(f"{what} need bn='eval': a single example has no batch statistics")


def _backward_block(out: Tensor, inp: Tensor, V: Tensor, retain: bool) -> Tensor:
    """d<out, u_j>/d inp for the columns u_j of V (``[numel(out), b]``), shape ``[numel(inp), b]``: one
    batched backward pass (``is_grads_batched``), column by column where an op has no batching rule."""
    b = V.shape[1]
    if b == 1:
        (g,) = torch.autograd.grad(out, inp, grad_outputs=V[:, 0].reshape(out.shape), retain_graph=retain)
        return g.detach().reshape(-1, 1)
    cols = V.T.reshape(b, *out.shape)
    try:
        (g,) = torch.autograd.grad(out, inp, grad_outputs=cols, retain_graph=True, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule for its backward
        parts = [torch.autograd.grad(out, inp, grad_outputs=c, retain_graph=True)[0] for c in cols]
        g = torch.stack(parts)
    return g.detach().reshape(b, -1).T
