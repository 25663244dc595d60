"""Batched evaluation of the training loss (and accuracy) at many parameter vectors.

A landscape probe needs I(theta) at hundreds or thousands of points. Reloading the weights into the model and
running a forward pass per point (what the loss-landscape scripts of Li et al. 2018 do) costs one model pass
per point with Python overhead in between. Here ``torch.func.vmap`` evaluates a batch of ``batch_points``
parameter vectors in one call (the per-point weights become batched matrix products), over the Objective's
data chunks.

Points on a plane theta(c) = origin + sum_k c_k d_k get a second saving (:func:`evaluate_plane`): when the
network is an ``nn.Sequential`` whose first parametrized module is linear in its parameters (``nn.Linear``,
``nn.Conv1d/2d/3d``) and is applied to the fixed data, its output is affine in c,

    u(c) = L(x; W0 + sum_k c_k D_k) = L(x; W0) + sum_k c_k L0(x; D_k)       (L0: the same map),

so the first layer is computed once per direction (k + 1 passes in total) instead of once per point, and every
point only pays for the layers above it. When those layers (or, in :func:`evaluate_points`, the whole network)
are a chain of ``nn.Linear``, ``nn.Flatten`` and element-wise activations, the points of a batch run through
them as one ``baddbmm`` per layer (bias fused, activations in place) instead of through vmap's generic
batching rules (fewer temporaries); anything else (convolutions, BatchNorm, ...) goes through vmap.

On a CPU a plane's Linear chain is instead *streamed*: one point at a time, every layer's weights W(c), bias
and output written into buffers allocated once (``addmm(out=)``), so the working set of a point (a few MB)
stays in cache; a batch of points would spill [B, m, width] temporaries to memory and cost an extra pass
per layer. Measured on the 51 x 51 benchmark (``benchmarks/bench_slice.py``): 8.4 vs 9.3-11.8 ms per point
on one thread. Values agree with the direct evaluation up to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..errors import ConfigError
from ..objective import Objective

__all__ = ["PlaneFn", "class_labels", "evaluate_plane", "evaluate_points", "plane_evaluator", "plane_points"]

_AFFINE_FIRST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Cap on the memory of the cached first-layer outputs (bytes); above it they are recomputed per point batch.
_CACHE_BYTES = 512 * 2**20


def class_labels(y: Tensor) -> Tensor | None:
    """Class indices behind targets: integer targets as they are, one-hot / soft rows by argmax, else None."""
    if not y.is_floating_point():
        return y.long()
    if y.dim() == 2 and y.shape[1] > 1:
        return y.argmax(dim=1)
    return None


def _reduce(obj: Objective, outputs: Tensor, y: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    """Sum of losses and number of correct predictions of one point's outputs on one chunk."""
    loss = obj.loss_fn(outputs, y).sum()
    if labels is None:
        correct = torch.zeros((), dtype=outputs.dtype, device=outputs.device)
    else:
        correct = (outputs.argmax(dim=-1) == labels).sum().to(outputs.dtype)
    return loss, correct


def _check_eval(obj: Objective, batch_points: int) -> None:
    if batch_points < 1:
        raise ConfigError(f"batch_points must be a positive integer, got {batch_points}")
    if obj.bn != "eval":
        raise ConfigError(
            "batched landscape evaluation needs bn='eval' (batch statistics cannot be vmapped); "
            "use interpolate(..., bn_recompute=True) to recompute BN statistics per point"
        )


def evaluate_points(
    obj: Objective, thetas: Tensor, batch_points: int = 16, labels: Tensor | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean training loss I(theta_j) and accuracy at each row of ``thetas`` ``[m, p]``.

    ``batch_points`` vectors are evaluated per vmapped call (memory ~ batch_points x (p + chunk x widths)).
    Accuracy is argmax(f) == label with labels from :func:`class_labels` of the targets (nan when the targets
    carry no classes). Returns float64 numpy arrays ``[m]``.
    """
    _check_eval(obj, batch_points)
    if thetas.dim() != 2 or thetas.shape[1] != obj.num_params:
        raise ConfigError(f"thetas must have shape [m, {obj.num_params}], got {tuple(thetas.shape)}")
    labels = class_labels(obj.y) if labels is None else labels
    chunk_labels = _chunk_labels(obj, labels)

    def point(theta: Tensor, x: Tensor, y: Tensor, lab: Tensor | None) -> tuple[Tensor, Tensor]:
        return _reduce(obj, obj.outputs_fn(theta, x), y, lab)

    model = obj.model
    chain = isinstance(model, nn.Sequential) and _chain_ok(model)
    if chain:
        slices = obj.layer_slices()
        shapes = dict(zip(obj.param_names, obj.param_shapes, strict=True))
        fixed = {k: v for k, v in obj.state_dict().items() if k not in slices}

        def batch_params(batch: Tensor) -> dict[str, Tensor]:
            out = {k: v.unsqueeze(0).expand(len(batch), *v.shape) for k, v in fixed.items()}
            out.update({k: batch[:, sl].reshape(len(batch), *shapes[k]) for k, sl in slices.items()})
            return out

    losses, accs = [], []
    with torch.no_grad():
        for start in range(0, len(thetas), batch_points):
            batch = thetas[start : start + batch_points].to(obj.device, obj.dtype)
            tot_l = torch.zeros(len(batch), dtype=obj.dtype, device=obj.device)
            tot_c = torch.zeros_like(tot_l)
            params = batch_params(batch) if chain else {}
            for (x, y), lab in zip(obj.chunks(), chunk_labels, strict=True):
                if chain:
                    l_, c_ = _chain_totals(obj, _run_chain(model, params, x, batched=False), y, lab)
                else:
                    l_, c_ = vmap(point, in_dims=(0, None, None, None))(batch, x, y, lab)
                tot_l += l_
                tot_c += c_
            losses.append(tot_l)
            accs.append(tot_c)
    return _finish(obj, losses, accs, labels)


def _chunk_labels(obj: Objective, labels: Tensor | None) -> list[Tensor | None]:
    n = obj.n_local  # this process's examples (all n without dist=)
    size = obj.chunk_size or n
    if labels is None:
        return [None] * len(range(0, n, size))
    labels = labels.to(obj.device)
    return [labels[s : s + size] for s in range(0, n, size)]


def _finish(
    obj: Objective, losses: list[Tensor], accs: list[Tensor], labels: Tensor | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-point sums of losses / correct predictions -> means over all n examples (summed over the
    processes of a distributed Objective first)."""
    sums = obj.allreduce(torch.stack([torch.cat(losses), torch.cat(accs)]))
    loss = (sums[0] / obj.n).double().cpu().numpy()
    acc = (sums[1] / obj.n).double().cpu().numpy()
    if labels is None:
        acc = np.full_like(loss, np.nan)
    return loss, acc


def plane_points(origin: Tensor, directions: Tensor, coords: np.ndarray | Tensor) -> Tensor:
    """theta(c) = origin + sum_k c_k d_k for each row c of ``coords`` ``[m, k]`` (``directions`` ``[k,
    p]``)."""
    c = torch.as_tensor(np.asarray(coords), dtype=directions.dtype, device=directions.device)
    return origin.unsqueeze(0) + c @ directions


def _first_layer_split(obj: Objective) -> tuple[int, str] | None:
    """Index and name of the first parametrized module of an nn.Sequential when it is affine in its params."""
    model = obj.model
    if not isinstance(model, nn.Sequential):
        return None
    for i, (name, module) in enumerate(model.named_children()):
        if next(module.parameters(), None) is None and next(module.buffers(), None) is None:
            continue  # Flatten, activations, ...: parameter free
        if not isinstance(module, _AFFINE_FIRST):
            return None
        return i, name
    return None


PlaneFn = Callable[[np.ndarray | Sequence[Sequence[float]]], tuple[np.ndarray, np.ndarray]]


def plane_evaluator(
    obj: Objective,
    origin: Tensor,
    directions: Tensor,
    batch_points: int = 16,
    labels: Tensor | None = None,
    fast: bool = True,
    stream: bool | None = None,
) -> PlaneFn:
    """A function ``coords [m, k] -> (loss [m], accuracy [m])`` on the plane theta(c) = origin + sum c_k d_k.

    The per-plane work (stacked weights and directions, the first layer's k + 1 passes over the data) is done
    once, at the first call, and reused by later calls: a grid evaluated row by row pays it once.
    With ``fast=True`` and an ``nn.Sequential`` whose first parametrized module is Linear/Conv, the first
    layer's output is assembled from those passes (see the module docstring); otherwise (or with
    ``fast=False``) the points are built explicitly and evaluated by :func:`evaluate_points`. ``stream``
    chooses how a Linear chain above the first layer runs: one point at a time through preallocated buffers
    (``True``; the default on CPU) or ``batch_points`` points per batched matmul (``False``; the default on
    other devices, where one large kernel beats many small launches).
    """
    _check_eval(obj, batch_points)
    directions = directions.to(obj.device, obj.dtype)
    origin = origin.to(obj.device, obj.dtype)
    if directions.dim() != 2 or directions.shape[1] != obj.num_params:
        raise ConfigError(f"directions must have shape [k, {obj.num_params}], got {tuple(directions.shape)}")
    split = _first_layer_split(obj) if fast else None
    fast_fn = None
    if split is not None:
        fast_fn = _plane_fast(obj, origin, directions, batch_points, labels, split,
                              obj.device.type == "cpu" if stream is None else stream)  # fmt: skip

    def evaluate(coords: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
        coords = np.atleast_2d(np.asarray(coords, dtype=np.float64))
        if coords.ndim != 2 or coords.shape[1] != directions.shape[0]:
            raise ConfigError(
                f"coords must have shape [m, {directions.shape[0]}] (one column per direction), "
                f"got {coords.shape}"
            )
        if fast_fn is not None:
            return fast_fn(coords)
        out_l, out_a = [], []
        for start in range(0, len(coords), 4 * batch_points):  # bound the [m, p] buffer of explicit points
            thetas = plane_points(origin, directions, coords[start : start + 4 * batch_points])
            l_, a_ = evaluate_points(obj, thetas, batch_points, labels)
            out_l.append(l_)
            out_a.append(a_)
        return np.concatenate(out_l), np.concatenate(out_a)

    return evaluate


def evaluate_plane(
    obj: Objective,
    origin: Tensor,
    directions: Tensor,
    coords: np.ndarray | Sequence[Sequence[float]],
    batch_points: int = 16,
    labels: Tensor | None = None,
    fast: bool = True,
    stream: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy at theta(c) = origin + sum_k c_k d_k for each row c of ``coords`` ``[m, k]``:
    ``plane_evaluator(obj, origin, directions, ...)(coords)`` (see :func:`plane_evaluator`)."""
    return plane_evaluator(obj, origin, directions, batch_points, labels, fast, stream)(coords)


# Parameter-free modules that act element-wise (shape preserving) in the batched chain executor.
_ELEMENTWISE = (
    nn.ReLU,
    nn.LeakyReLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.GELU,
    nn.ELU,
    nn.SiLU,
    nn.Softplus,
    nn.Identity,
    nn.Dropout,
)


def _elementwise() -> tuple[type[nn.Module], ...]:
    from ..models import PolyReLU  # element-wise; holds only a coefficient buffer

    return (*_ELEMENTWISE, PolyReLU)


def _chain_ok(rest: nn.Sequential) -> bool:
    """True for a chain of Linear (at least one), Flatten(start_dim=1) and element-wise modules."""
    elementwise = _elementwise()
    if not any(isinstance(m, nn.Linear) for m in rest.children()):
        return False
    for m in rest.children():
        if isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                return False
        elif not isinstance(m, (nn.Linear, *elementwise)):
            return False
    return True


def _run_chain(chain: nn.Sequential, params: dict[str, Tensor], z: Tensor, batched: bool = True) -> Tensor:
    """Forward of a Linear/Flatten/element-wise chain for B parameter sets at once (params ``[B, ...]``).

    ``z`` is ``[B, m, ...]`` (``batched``) or the shared input ``[m, ...]``, which becomes batched at the
    first Linear. Each later Linear is one ``baddbmm`` (bias fused); ReLU runs in place on the intermediate
    buffers.
    """
    for name, m in chain.named_children():
        if isinstance(m, nn.Linear):
            w = params[f"{name}.weight"].transpose(1, 2)
            b = params.get(f"{name}.bias")
            if batched:
                z = torch.bmm(z, w) if b is None else torch.baddbmm(b.unsqueeze(1), z, w)
            else:
                z = torch.matmul(z, w) if b is None else torch.matmul(z, w).add_(b.unsqueeze(1))
                batched = True
        else:
            z = _parameter_free(m, z, batched)
    return z


def _parameter_free(m: nn.Module, z: Tensor, own: bool, start: int | None = None) -> Tensor:
    """A chain's parameter-free module applied to ``z``: Flatten from dim ``start`` (default 2 for a batch
    of points ``[B, m, ...]`` when ``own``, else 1), ReLU in place when ``z`` is ``own`` buffer, Identity and
    Dropout (eval) skipped, anything else called."""
    if isinstance(m, nn.Flatten):
        return z.flatten((2 if own else 1) if start is None else start)
    if isinstance(m, nn.ReLU):
        return z.relu_() if own else torch.relu(z)
    if isinstance(m, (nn.Identity, nn.Dropout)):
        return z
    return m(z)


def _chain_totals(obj: Objective, out: Tensor, y: Tensor, lab: Tensor | None) -> tuple[Tensor, Tensor]:
    """Per-point sums of losses and of correct predictions from chain outputs ``[B, m, K]``."""
    b, m = out.shape[:2]
    yy = y.unsqueeze(0).expand(b, *y.shape).reshape(b * m, *y.shape[1:])
    loss = obj.loss_fn(out.reshape(b * m, *out.shape[2:]), yy).view(b, m).sum(1)
    if lab is None:
        return loss, torch.zeros_like(loss)
    return loss, (out.argmax(dim=-1) == lab.unsqueeze(0)).sum(1).to(loss.dtype)


def _plane_fast(
    obj: Objective,
    origin: Tensor,
    directions: Tensor,
    batch_points: int,
    labels: Tensor | None,
    split: tuple[int, str],
    stream: bool,
) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    model: nn.Sequential = obj.model  # type: ignore[assignment]
    index, first_name = split
    head, first, rest = model[:index], model[index], model[index + 1 :]
    labels = class_labels(obj.y) if labels is None else labels
    chunk_labels = _chunk_labels(obj, labels)
    selected = set(obj.param_names)
    fixed = {k: v for k, v in obj.state_dict().items() if k not in selected}
    prefix = f"{first_name}."
    rest_params = [k for k, _ in rest.named_parameters()]
    rest_buffers = {k: b for k, b in rest.named_buffers()}

    def full(theta: Tensor, direction: bool) -> dict[str, Tensor]:
        # A direction leaves the non-selected parameters unchanged: their component is zero.
        tensors = {k: torch.zeros_like(v) if direction else v for k, v in fixed.items()}
        tensors.update(obj.unflatten(theta))
        return tensors

    base = full(origin, False)
    dirs = [full(d, True) for d in directions]
    # Per rest parameter: stack [W0, D_1, ..., D_k] so that W(c) = W0 + sum_j c_j D_j is one small matmul.
    stacks = {k: torch.stack([base[k], *[d[k] for d in dirs]]) for k in rest_params}
    chunks = list(obj.chunks())

    def first_outputs(x: Tensor) -> Tensor:
        hx = head(x)
        own = [{k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)} for t in (base, *dirs)]
        return torch.stack([functional_call(first, p, (hx,)) for p in own])  # [k + 1, m, ...]

    def rest_point(
        params: dict[str, Tensor], z: Tensor, y: Tensor, lab: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        outputs = functional_call(rest, {**params, **rest_buffers}, (z,))
        return _reduce(obj, outputs, y, lab)

    chain = _chain_ok(rest)
    cache: list[list[Tensor] | None] = []  # [cached first-layer outputs per chunk, or None], filled once

    def batched(coords: np.ndarray, cached: list[Tensor] | None) -> tuple[np.ndarray, np.ndarray]:
        c_all = torch.as_tensor(coords, dtype=obj.dtype, device=obj.device)
        losses, accs = [], []
        for start in range(0, len(coords), batch_points):
            c = c_all[start : start + batch_points]
            c1 = torch.cat([torch.ones_like(c[:, :1]), c], dim=1)  # [B, k + 1]: (1, c)
            params = {k: torch.tensordot(c1, v, dims=1) for k, v in stacks.items()}
            tot_l = torch.zeros(len(c), dtype=obj.dtype, device=obj.device)
            tot_c = torch.zeros_like(tot_l)
            for j, ((x, y), lab) in enumerate(zip(chunks, chunk_labels, strict=True)):
                u = cached[j] if cached is not None else first_outputs(x)
                z = torch.tensordot(c1, u, dims=1)  # [B, m, ...] first-layer outputs of every point
                if chain:
                    l_, c_ = _chain_totals(obj, _run_chain(rest, params, z), y, lab)
                else:
                    l_, c_ = vmap(rest_point, in_dims=(0, 0, None, None))(params, z, y, lab)
                tot_l += l_
                tot_c += c_
            losses.append(tot_l)
            accs.append(tot_c)
        return _finish(obj, losses, accs, labels)

    def evaluate(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        was_training = model.training
        model.train(False)
        try:
            with torch.no_grad():
                if not cache:
                    per = first_outputs(chunks[0][0][:1])[0].numel()  # first-layer output size, one example
                    cache_ok = per * obj.n_local * (len(dirs) + 1) * obj.x.element_size() <= _CACHE_BYTES
                    cache.append([first_outputs(x) for x, _ in chunks] if cache_ok else None)
                if chain and stream:
                    labs = (labels, chunk_labels)
                    return _stream_chain(obj, rest, stacks, coords, chunks, labs, cache[0], first_outputs)
                return batched(coords, cache[0])
        finally:
            model.train(was_training)

    return evaluate


def _combine_(out: Tensor, stack: Tensor, c: Sequence[float]) -> Tensor:
    """out <- stack[0] + sum_j c_j stack[j + 1], in place (no temporaries)."""
    torch.add(stack[0], stack[1], alpha=c[0], out=out)
    for cj, s in zip(c[1:], stack[2:], strict=True):
        out.add_(s, alpha=cj)
    return out


def _stream_chain(
    obj: Objective,
    rest: nn.Sequential,
    stacks: dict[str, Tensor],
    coords: np.ndarray,
    chunks: list[tuple[Tensor, Tensor]],
    labels: tuple[Tensor | None, list[Tensor | None]],
    cached: list[Tensor] | None,
    first_outputs: Callable[[Tensor], Tensor],
) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate a plane's Linear chain point by point in preallocated buffers (see the module docstring).

    Per point c: W(c) = W0 + sum_j c_j D_j for every parameter of ``rest`` (``stacks[k]`` = [W0, D_1, ...]),
    the first-layer output u(c) = u_0 + sum_j c_j u_j, then each Linear as ``addmm(out=)`` into its own
    buffer and ReLU in place; other element-wise modules allocate as usual. ``labels`` = (all labels, labels
    per chunk).
    """
    all_labels, chunk_labels = labels
    weights = {k: torch.empty_like(v[0]) for k, v in stacks.items()}
    outs: dict[tuple[str, int], Tensor] = {}  # per (Linear, chunk length): the layer's output buffer
    first_buf: dict[torch.Size, Tensor] = {}
    tot_l = torch.zeros(len(coords), dtype=obj.dtype, device=obj.device)
    tot_c = torch.zeros_like(tot_l)
    for i, c in enumerate(coords.tolist()):
        done: set[str] = set()  # parameters of this point already written (each right before first use)

        def param(k: str, c: list[float] = c, done: set[str] = done) -> Tensor:
            if k not in done:
                _combine_(weights[k], stacks[k], c)
                done.add(k)
            return weights[k]

        for j, ((x, y), lab) in enumerate(zip(chunks, chunk_labels, strict=True)):
            u = cached[j] if cached is not None else first_outputs(x)
            if u.shape[1:] not in first_buf:  # one buffer per chunk shape (the last chunk may be shorter)
                first_buf[u.shape[1:]] = torch.empty_like(u[0])
            z = _combine_(first_buf[u.shape[1:]], u, c)
            for name, m in rest.named_children():
                if isinstance(m, nn.Linear):
                    key = (name, len(z))
                    if key not in outs:
                        outs[key] = z.new_empty(len(z), m.out_features)
                    w = param(f"{name}.weight").t()
                    b = param(f"{name}.bias") if f"{name}.bias" in stacks else None
                    z = torch.mm(z, w, out=outs[key]) if b is None else torch.addmm(b, z, w, out=outs[key])
                else:
                    z = _parameter_free(m, z, own=True, start=1)
            l_, c_ = _reduce(obj, z, y, lab)
            tot_l[i] += l_
            tot_c[i] += c_
    return _finish(obj, [tot_l], [tot_c], all_labels)
