"""Per-example Jacobian Gram blocks M_i = J_i J_i^T (K x K) without materializing per-example Jacobians.

J_i = d f(x_i) / d theta is K x p. For a Linear layer y = W a + b, the gradient of output k of example i with
respect to (W, b) is (delta_ik a_i^T, delta_ik), delta_ik = d f_ik / d y_i the back-propagated sensitivity at
the layer's pre-activation, so the layer's share of <grad f_ik, grad f_il> is

    (delta_ik . delta_il) (a_i . a_i + 1)                      (the +1 only when the bias is selected).

One forward pass with hooks recording each layer's input and output, then K backward passes (one per
output, batched with vmap) give every delta at once: the cost is K backward passes in all, never n x K x p
memory. Linear layers applied to sequences ([n, T, in]) use the per-example, per-layer gradient
sum_t delta_ikt a_it^T ([K, m, out, in], small for such layers); Conv2d layers get the same from one grouped
convolution (:func:`conv_weight_grads`, no unfold into patches: 5x faster on CPU). Every other selected
parameter (BatchNorm affine, custom layers, weight-shared modules) falls back to a chunked ``vmap(jacrev)``
over those parameters only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

__all__ = ["conv_weight_grads", "jacobian_gram_blocks"]

_FALLBACK_BYTES = 2**27


def _covered(obj, module_name: str, module: nn.Module) -> tuple[bool, bool]:
    prefix = f"{module_name}." if module_name else ""
    names = set(obj.param_names)
    w = f"{prefix}weight" in names
    b = getattr(module, "bias", None) is not None and f"{prefix}bias" in names
    return w, b


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, nn.Conv2d):
        return module.groups == 1 and module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return False


def _patches(module: nn.Module, a: Tensor) -> Tensor:
    """Layer input as [m, T, in] (T positions sharing the weight)."""
    if isinstance(module, nn.Conv2d):
        cols = nn.functional.unfold(
            a, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
        )
        return cols.transpose(1, 2)
    return a.reshape(a.shape[0], -1, a.shape[-1])


def _sensitivities(module: nn.Module, d: Tensor) -> Tensor:
    """Gradient at the layer output as [m, T, out]."""
    if isinstance(module, nn.Conv2d):
        return d.flatten(2).transpose(1, 2)
    return d.reshape(d.shape[0], -1, d.shape[-1])


def conv_weight_grads(module: nn.Conv2d, a: Tensor, d: Tensor) -> Tensor:
    """Per-example weight gradients of a Conv2d (groups=1): G_i[o, c, u, w] = sum_{y,x} d_i[o, y, x]
    a_i[c, y s + u dil - pad, x s + w dil - pad], for inputs ``a`` [n, C, H, W] and output gradients ``d``
    [n, O', H', W'] (O' any multiple of the layer's outputs, e.g. K x out for K network outputs), as
    [n, O', C, kh, kw].

    One grouped convolution (the examples as groups, the original stride as dilation and vice versa), not
    an unfold into [n, T, C kh kw] patches, whose im2col / col2im dominate the cost on CPU.
    """
    n, c = a.shape[:2]
    o = d.shape[1]
    kh, kw = module.kernel_size
    out = nn.functional.conv2d(
        a.transpose(0, 1),
        d.reshape(n * o, 1, *d.shape[2:]),
        stride=module.dilation,
        padding=module.padding,
        dilation=module.stride,
        groups=n,
    )
    return out[:, :, :kh, :kw].reshape(c, n, o, kh, kw).permute(1, 2, 0, 3, 4)


def _layer_gram(module: nn.Module, a: Tensor, deltas: Tensor, use_w: bool, use_b: bool) -> Tensor:
    """sum over this layer's selected parameters of <grad f_ik, grad f_il>, shape [m, K, K]."""
    if isinstance(module, nn.Conv2d):
        k_out, m = deltas.shape[0], deltas.shape[1]
        out = torch.zeros(m, k_out, k_out, dtype=deltas.dtype, device=deltas.device)
        if use_w:  # [m, K * out, ...] -> per-example, per-output weight gradients [m, K, out * in]
            folded = deltas.transpose(0, 1).reshape(m, -1, *deltas.shape[3:])
            g = conv_weight_grads(module, a, folded).reshape(m, k_out, -1)
            out += torch.einsum("mkq,mlq->mkl", g, g)
        if use_b:
            s = deltas.sum((3, 4))  # [K, m, out]
            out += torch.einsum("kmo,lmo->mkl", s, s)
        return out
    a = _patches(module, a)  # [m, T, in]
    d = torch.stack([_sensitivities(module, x) for x in deltas])  # [K, m, T, out]
    m, t = a.shape[0], a.shape[1]
    out = torch.zeros(m, d.shape[0], d.shape[0], dtype=d.dtype, device=d.device)
    if t == 1:
        dd = torch.einsum("kmo,lmo->mkl", d[:, :, 0], d[:, :, 0])
        coef = (a[:, 0] * a[:, 0]).sum(-1) * float(use_w) + float(use_b)
        return dd * coef[:, None, None]
    if use_w:
        g = torch.einsum("kmto,mti->kmoi", d, a)  # per-example, per-output weight gradients of this layer
        out += torch.einsum("kmoi,lmoi->mkl", g, g)
    if use_b:
        s = d.sum(2)  # [K, m, out]
        out += torch.einsum("kmo,lmo->mkl", s, s)
    return out


def weight_layers(obj) -> dict[str, tuple[nn.Module, bool, bool]]:
    """Linear / Conv2d modules with selected parameters: name -> (module, weight selected, bias selected)."""
    layers: dict[str, tuple[nn.Module, bool, bool]] = {}
    for name, module in obj.model.named_modules():
        if _supported(module):
            use_w, use_b = _covered(obj, name, module)
            if use_w or use_b:
                layers[name] = (module, use_w, use_b)
    return layers


def covered_params(layers: dict[str, tuple[nn.Module, bool, bool]]) -> set[str]:
    """Names of the parameters the layers of :func:`weight_layers` account for."""
    covered = set()
    for name, (_, use_w, use_b) in layers.items():
        prefix = f"{name}." if name else ""
        if use_w:
            covered.add(f"{prefix}weight")
        if use_b:
            covered.add(f"{prefix}bias")
    return covered


def recorded_forward(
    obj, theta: Tensor, x: Tensor, layers: dict[str, tuple[nn.Module, bool, bool]]
) -> tuple[Tensor, dict[str, list[tuple[Tensor, Tensor]]]]:
    """Outputs f(x; theta) and, per layer, the (input, output) pairs seen by forward hooks (graph kept).

    A layer called more than once per forward (weight sharing) has several records.
    """
    records: dict[str, list[tuple[Tensor, Tensor]]] = {name: [] for name in layers}
    handles = []
    for name, (module, _, _) in layers.items():

        def hook(mod, inputs, output, name=name):
            records[name].append((inputs[0], output))

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.enable_grad():
            f = obj.outputs_fn(theta, x)
    finally:
        for h in handles:
            h.remove()
    return f, records


def _output_sensitivities(f: Tensor, targets: list[Tensor]) -> list[list[Tensor]]:
    """d (sum_i f_ik) / d target for every output k: one batched backward pass (vmap over the K one-hot
    cotangents), or K sequential passes where batching is not supported."""
    k_out = f.shape[1]
    try:
        eye = torch.eye(k_out, dtype=f.dtype, device=f.device).unsqueeze(1).expand(k_out, *f.shape)
        gs = torch.autograd.grad(f, targets, grad_outputs=eye, retain_graph=True, is_grads_batched=True,
                                 allow_unused=True)  # fmt: skip
        return [[torch.zeros_like(t) if g is None else g[k] for g, t in zip(gs, targets, strict=True)]
                for k in range(k_out)]  # fmt: skip
    except RuntimeError:
        out = []
        for k in range(k_out):
            gk = torch.autograd.grad(f[:, k].sum(), targets, retain_graph=True, allow_unused=True)
            out.append([torch.zeros_like(t) if g is None else g for g, t in zip(gk, targets, strict=True)])
        return out


def jacobian_gram_blocks(obj, x: Tensor, max_examples: int | None = None) -> Tensor:
    """M_i = J_i J_i^T for the examples ``x`` at the objective's base point, shape [m, K, K].

    ``max_examples`` bounds how many examples go through the K backward passes at once (their
    sensitivities are K x the layer outputs: see :func:`gram_memory`). Requires ``bn="eval"`` (with batch
    statistics examples are coupled and J_i is not per-example).
    """
    obj._require_eval_bn("Jacobian Gram blocks")
    layers = weight_layers(obj)
    step = max(1, max_examples or len(x))
    return torch.cat([_blocks(obj, x[i : i + step], layers) for i in range(0, len(x), step)])


def gram_memory(obj) -> tuple[int, int, int]:
    """Bytes the Gauss-Newton blocks need, estimated from one example's forward pass before any is built:
    (K, bytes per example of the stored K x K blocks, bytes per example of the transient K-fold
    sensitivities while they are computed).

    Stored: M_i, Q_i and C_i = Q_i M_i Q_i, 3 K^2 numbers per example. Transient: K copies of every
    recorded layer output (and of the weight of each weight-shared layer, the per-example gradients of
    ``_layer_gram``), twice (autograd's result and the stacked copy), plus the K x K one-hot cotangents.
    """
    layers = weight_layers(obj)
    first, _ = next(iter(obj.chunks(1)))  # one example, from tensors or from a loader's first batch
    with torch.no_grad():
        f, records = recorded_forward(obj, obj.theta.detach(), first, layers)
    k_out = f.numel()
    size = obj.theta.element_size()
    per_layer = 0
    for name, rec in records.items():
        for a, out in rec:
            per_layer += out.numel()
            module = layers[name][0]
            if isinstance(module, nn.Conv2d) or (a.dim() > 2 and a[0].numel() != a.shape[-1]):
                per_layer += module.weight.numel()
    return k_out, 3 * k_out * k_out * size, (2 * k_out * per_layer + k_out * k_out) * size


def _blocks(obj, x: Tensor, layers: dict[str, tuple[nn.Module, bool, bool]]) -> Tensor:
    leaf = obj.theta.detach().clone().requires_grad_(True)
    f, records = recorded_forward(obj, leaf, x, layers)
    shared = [name for name, rec in records.items() if len(rec) != 1]
    if shared:  # a module called several times per forward: its parameters go to the fallback
        return _blocks(obj, x, {k: v for k, v in layers.items() if k not in shared})
    f = f.reshape(f.shape[0], -1)
    m, k_out = f.shape
    names = list(layers)
    outs = [records[name][0][1] for name in names]
    need = [o.requires_grad for o in outs]
    blocks = torch.zeros(m, k_out, k_out, dtype=f.dtype, device=f.device)
    if any(need):
        targets = [o for o, r in zip(outs, need, strict=True) if r]
        grads_per_k = _output_sensitivities(f, targets)
        j = 0
        for name, r in zip(names, need, strict=True):
            if not r:
                continue
            module, use_w, use_b = layers[name]
            deltas = torch.stack([grads_per_k[k][j] for k in range(k_out)])
            blocks += _layer_gram(module, records[name][0][0].detach(), deltas, use_w, use_b)
            j += 1
    covered = covered_params(layers)
    rest = [s for name, s in obj.layer_slices().items() if name not in covered]
    if rest:
        blocks += _fallback_gram(obj, x, rest)
    return blocks.detach()


def _fallback_gram(obj, x: Tensor, slices: list[slice]) -> Tensor:
    """J_i J_i^T over the given parameter slices by chunked vmap(jacrev) on those parameters only."""
    idx = torch.cat([torch.arange(s.start, s.stop, device=obj.device) for s in slices])
    theta = obj.theta.detach()
    sub0 = theta[idx]

    def single(sub: Tensor, xi: Tensor) -> Tensor:
        full = theta.index_put((idx,), sub)
        return obj.outputs_fn(full, xi.unsqueeze(0)).reshape(-1)

    k_out = obj.outputs_fn(theta, x[:1]).numel()
    per = max(1, _FALLBACK_BYTES // max(1, k_out * idx.numel() * theta.element_size()))
    parts = []
    for start in range(0, len(x), per):
        jac = vmap(jacrev(single), in_dims=(None, 0))(sub0, x[start : start + per])  # [m, K, q]
        parts.append(torch.einsum("mkq,mlq->mkl", jac, jac))
    return torch.cat(parts).detach()
