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
import functools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap

from ..curvature._accurate import col_dots
from ..errors import ConfigError
from .checks import (
    as_data_tensor,
    check_chunk_size,
    check_finite_data,
    check_model_tensors,
    check_targets,
    describe_call_error,
    resolve_device,
    unwrap_model,
)
from .context import explain_unsupported, measurement_mode, note_attention
from .data import LoaderSource, TensorSource, map_tensors, select
from .dist import allreduce_sum, gather_counts, rank_of, resolve_group, shard_range
from .losses import LOSSES, LossFn, _cross_entropy, _mse, loss_name, per_example_loss
from .sequential import MLPPlan, mlp_plan

BNMode = Literal["eval", "train"]

__all__ = ["BNMode", "Objective"]


def _explained(method: Callable[..., Any]) -> Callable[..., Any]:
    """Turn an autograd failure for an op without the needed derivative into a clear UnsupportedOperationError
    naming the op and the module (see ``context.py``)."""

    @functools.wraps(method)
    def wrapper(self: Objective, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (RuntimeError, NotImplementedError) as err:
            explain_unsupported(err, self.model, self._one_example_forward)
            raise

    return wrapper


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
    data: instead of ``x, y``, a loader / re-iterable of batches (``(x, y)`` tuples or dicts with the targets
        under ``target_key``; ``data.py``); ``forward=`` / ``batch_loss=`` hooks for any other batch form.
    device: optional device for model and data (a copy of the model when it differs).
    dist: ``None`` (one process), ``True`` (the default ``torch.distributed`` process group) or a
        ProcessGroup: the data given here is this process's shard and every data-summed result is summed
        over the group (``dist.py``); :meth:`shard` splits full data instead.

    Attribute ``structured_products`` (default True): Hessian products of a plain MLP (an ``nn.Sequential`` of
    Linear layers and pointwise activations, tensor data, no hook) use the closed-form R-operator of
    ``sequential.py`` instead of autograd's double backward (same values to rounding; timings in
    benchmarks/RESULTS.md); set it to False to force the generic path.
    """

    structured_products: bool = True

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
        *,
        data: Iterable[Any] | None = None,
        target_key: str = "labels",
        forward: Callable[[nn.Module, Any], tuple[Tensor, Any]] | None = None,
        batch_loss: Callable[[nn.Module, Any], Tensor] | None = None,
        device: str | torch.device | None = None,
        dist: Any = None,
    ) -> None:
        if data is None and x is not None and y is None and _is_batches(x):
            data, x = x, None  # Objective(model, loss, loader)
        check_chunk_size(chunk_size)
        if bn not in ("eval", "train"):
            raise ConfigError(f"bn must be 'eval' or 'train', got {bn!r}")
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise ConfigError(f"dtype must be a floating torch dtype (e.g. torch.float64), got {dtype!r}")
        if forward is not None and batch_loss is not None:
            raise ConfigError("pass either forward= or batch_loss=, not both")
        if (forward is not None or batch_loss is not None) and data is None:
            raise ConfigError("forward= and batch_loss= hooks read batches: pass the data as data=<loader>")
        self.model = model = self._init_model(model, dtype, resolve_device(device))
        first = next(model.parameters())
        hook_name = getattr(batch_loss, "__name__", "batch_loss")
        self.loss_name = loss_name(loss) if batch_loss is None else hook_name
        self._loss = per_example_loss(loss)
        self.bn: BNMode = bn
        self.chunk_size = chunk_size
        self.device = first.device
        self.dtype = dtype or first.dtype
        self._hook = forward if forward is not None else batch_loss
        self._hook_gives_losses = batch_loss is not None
        self._hooked = _Hooked(model, self._hook) if self._hook is not None else None
        self._source: TensorSource | LoaderSource = self._init_data(x, y, data, target_key, chunk_size)
        self._group = resolve_group(dist, self.device)
        self._counts = gather_counts(self._source.n, self._group, self.device) if self._group else None
        active = self._select_params(params)
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
        self._mlp_plan = mlp_plan(model, self.param_names, self.param_sizes) if self._hooked is None else None
        self._mlp_cache: Any = None
        self._forward_ad = True  # cleared when the model has an op without a forward-mode derivative
        self._finite_checked = False
        self._probe()
        note_attention(model)

    @staticmethod
    def _init_model(model: nn.Module, dtype: torch.dtype | None, device: torch.device | None) -> nn.Module:
        """Unwrap, validate and (when dtype / device differ) copy the model; the user's model is never
        modified."""
        model = unwrap_model(model)
        check_model_tensors(model)
        first = next(model.parameters(), None)
        if first is None:
            raise ConfigError("the model has no parameters")
        if (dtype is not None and first.dtype != dtype) or (device is not None and first.device != device):
            model = copy.deepcopy(model).to(device=device or first.device, dtype=dtype)
        return model

    def _init_data(
        self, x: Any, y: Any, data: Iterable[Any] | None, target_key: str, chunk_size: int | None
    ) -> TensorSource | LoaderSource:
        if data is not None:
            if x is not None or y is not None:
                raise ConfigError("pass the data either as x, y tensors or as data=<loader>, not both")
            if chunk_size is not None:
                raise ConfigError("with data=<loader> each batch is one chunk: set the loader's batch size")
            source = LoaderSource(
                data, target_key=target_key, hooked=self._hook is not None, to_device=self._to_device
            )
            first_x, first_y = source.first_chunk()  # the first batch reads (a clear error now)
            for name, tree in (("the first batch's inputs", first_x), ("the first batch's targets", first_y)):
                map_tensors(lambda t, name=name: check_finite_data(t, name), tree)
            return source
        if x is None or y is None:
            raise ConfigError("Objective needs data: pass x and y, or data=<loader>")
        x, y = as_data_tensor(x, "x"), as_data_tensor(y, "y")
        if x.dim() == 0 or y.dim() == 0:
            raise ConfigError(
                f"x and y need a first (example) dimension, got shapes {tuple(x.shape)}, {tuple(y.shape)}"
            )
        if len(x) != len(y):
            raise ConfigError(f"x and y disagree on the number of examples: {len(x)} vs {len(y)}")
        if len(x) == 0:
            raise ConfigError("Objective needs at least one example")
        check_finite_data(x, "x")
        check_finite_data(y, "y")
        return TensorSource(self._to_device(x), self._to_device(y), chunk_size)

    def _select_params(self, params: str | Sequence[str] | None) -> list[tuple[str, nn.Parameter]]:
        """The parameters the flat vector holds: the trainable ones matching ``params`` (all by default)."""
        every = list(self.model.named_parameters())
        named = [(k, p) for k, p in every if p.requires_grad]
        if params is None:
            if not named:
                raise ConfigError(
                    "every parameter of the model is frozen (requires_grad=False): nothing to measure; "
                    "unfreeze the ones to measure (p.requires_grad_(True))"
                )
            return named
        patterns = [params] if isinstance(params, str) else list(params)
        if not all(isinstance(pat, str) for pat in patterns):
            raise ConfigError(f"params must be a name pattern or a list of patterns, got {params!r}")
        active = [(k, p) for k, p in named if any(fnmatch.fnmatchcase(k, pat) for pat in patterns)]
        if not active:
            frozen = [
                k
                for k, p in every
                if not p.requires_grad and any(fnmatch.fnmatchcase(k, pat) for pat in patterns)
            ]
            if frozen:
                raise ConfigError(
                    f"params={params!r} matches only frozen parameters (requires_grad=False): "
                    f"{', '.join(frozen)}; unfreeze them (requires_grad_(True)) to measure them"
                )
            names = ", ".join(k for k, _ in named)
            raise ConfigError(f"params={params!r} matches no parameter; the model has: {names}")
        return active

    def _probe(self) -> None:
        """One forward pass on one example: input / target shapes and class labels checked now, with a clear
        error, instead of failing inside a product."""
        x, y = next(iter(self.chunks()))
        one_x, one_y = select(x, slice(0, 1)), select(y, slice(0, 1))
        with torch.no_grad():
            try:
                if self._hook_gives_losses:
                    self.losses_fn(self.theta, one_x, one_y)
                    return
                f, t = self._outputs_targets(self.theta, one_x, one_y, bn="eval")
            except ConfigError:
                raise
            except (RuntimeError, IndexError, TypeError, ValueError) as err:
                raise describe_call_error(self.model, one_x, err) from err
            if isinstance(t, Tensor):
                t = self._to_device(t)
            builtin = next((k for k, fn in LOSSES.items() if fn is self._loss), "")
            labels = self._source.y if isinstance(self._source, TensorSource) else y
            check_targets(builtin, f, t, labels if self._hooked is None else None)
            try:
                self._loss(f, t)
            except ConfigError:
                raise
            except (RuntimeError, IndexError, TypeError, ValueError) as err:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ConfigError(
                    f"the loss {self.loss_name!r} cannot be evaluated on one example's outputs of shape "
                    f"{tuple(f.shape)} and targets {shape}: {str(err).strip().splitlines()[0]}"
                ) from err

    def check_finite(self) -> None:
        """Raise a ConfigError unless the loss and its gradient are finite at the base point (a diverged run
        has no curvature to measure). Eigensolvers call it before their first product; cached once passed."""
        if self._finite_checked:
            return
        plan = self._structured_plan()
        if plan is not None and self._single_chunk():  # from the forward quantities the products reuse
            primal = self._primal_at_base(plan)
            value_t, g = self.allreduce(primal.value), self.allreduce(plan.gradient(primal))
        else:
            value_t, g = self._value_and_grad(self.theta)
        value = float(value_t)
        if not math.isfinite(value):
            raise ConfigError(
                f"the loss is {value} at these weights (a diverged run?): there is no curvature to measure"
            )
        if not bool(torch.isfinite(g).all()):
            bad = int((~torch.isfinite(g)).sum())
            raise ConfigError(
                f"the gradient has {bad} NaN or inf entries at these weights although the loss is "
                f"{value:.6g} (a diverged run, or an op with an infinite derivative there): there is no "
                "curvature to measure"
            )
        self._finite_checked = True

    def _to_device(self, t: Tensor) -> Tensor:
        """A data tensor on the objective's device; floating tensors in its dtype, others as they are."""
        return t.to(self.device, self.dtype) if t.is_floating_point() else t.to(self.device)

    # ------------------------------------------------------------------ basics
    @property
    def n(self) -> int:
        """Number of examples (over all processes with ``dist=``)."""
        return sum(self._counts) if self._counts is not None else self._source.n

    @property
    def n_local(self) -> int:
        """Number of examples this process holds (``n`` without ``dist=``)."""
        return self._source.n

    @property
    def distributed(self) -> bool:
        """Whether data-summed results are summed over a process group (``dist=``)."""
        return self._group is not None

    @property
    def x(self) -> Tensor:
        """All inputs as one tensor (tensor form only)."""
        return self._tensor_data().x

    @property
    def y(self) -> Tensor:
        """All targets as one tensor (tensor form only)."""
        return self._tensor_data().y

    @property
    def is_tensor_data(self) -> bool:
        """Whether the examples are held as two tensors ``x, y`` (else they come from a loader)."""
        return self._source.is_tensor

    def _tensor_data(self) -> TensorSource:
        if not isinstance(self._source, TensorSource):
            raise ConfigError(
                "this measurement needs the data as tensors (Objective(model, loss, x, y)); the Objective "
                "reads a loader (data=), which is never concatenated into memory"
            )
        return self._source

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
        other._drop_caches()
        other._finite_checked = False
        return other

    def subset(self, index: Tensor | Sequence[int]) -> Objective:
        """The same objective on a subset of the examples (for ``subsamples=`` repeats and minibatches).

        With a loader, each product still reads every batch, and keeps the selected examples of each (in data
        order, repeats kept). With ``dist=``, ``index`` holds global positions (the same on every process,
        see ``dist.py``); each process keeps those it holds.
        """
        other = copy.copy(self)
        device = self.device if self._source.is_tensor else "cpu"
        idx = torch.as_tensor(index, device=device, dtype=torch.long).reshape(-1)
        if self._counts is not None:
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.n):
                raise ConfigError(f"subset index out of range for {self.n} examples")
            starts = [sum(self._counts[:r]) for r in range(len(self._counts))]
            other._counts = [
                int(((idx >= lo) & (idx < lo + c)).sum()) for lo, c in zip(starts, self._counts, strict=True)
            ]
            lo = starts[rank_of(self._group)]
            idx = idx[(idx >= lo) & (idx < lo + self._source.n)] - lo
        other._source = self._source.subset(idx)
        other._drop_caches()
        other._finite_checked = False
        return other

    def shard(self, dist: Any = True) -> Objective:
        """This objective split over the processes of a group: each takes a contiguous block of the examples
        (sizes differ by at most one) and sums its products with the others' (see ``dist.py``).

        Call it on every process with the same full data (tensor form). ``dist``: True (the default process
        group) or a ProcessGroup.
        """
        if self._group is not None:
            raise ConfigError("this Objective is already distributed (dist=)")
        source = self._tensor_data()
        group = resolve_group(dist, self.device)
        lo, hi = shard_range(source.n, group)
        counts = gather_counts(hi - lo, group, self.device)
        if min(counts) == 0:
            raise ConfigError(f"cannot shard {source.n} examples over {len(counts)} processes")
        other = copy.copy(self)
        other._source = TensorSource(source.x[lo:hi], source.y[lo:hi], source.chunk_size)
        other._group = group
        other._counts = counts
        other._drop_caches()
        other._finite_checked = False
        return other

    def chunks(self, size: int | None = None) -> Iterator[tuple[Any, Any]]:
        """Iterate over ``(inputs, targets)`` chunks: slices of at most ``chunk_size`` (or ``size``) examples
        of ``x, y``, or the loader's batches (split into pieces of at most ``size`` examples if given).

        ``inputs`` is what the model is called with (a tensor, or a dict of keyword inputs; the whole batch
        with a forward= / batch_loss= hook, ``targets`` then None).
        """
        return self._source.chunks(size)

    # ------------------------------------------------------------------ functional core
    def _tensors(self, theta: Tensor) -> dict[str, Tensor]:
        tensors = dict(self._fixed)
        tensors.update(self.unflatten(theta))
        if self.bn == "train":  # batch statistics without touching the model's running buffers
            tensors.update({k: b.clone() for k, b in self.model.named_buffers()})
        return tensors

    def _call(self, theta: Tensor, x: Any, bn: str | None = None) -> Any:
        """The model's raw result on the inputs ``x`` (the hook's, with a hook) at the flat vector theta."""
        tensors = self._tensors(theta)
        with measurement_mode(self.model, bn or self.bn):
            if self._hooked is not None:
                return functional_call(self._hooked, {f"model.{k}": v for k, v in tensors.items()}, (x,))
            if isinstance(x, Mapping):
                return functional_call(self.model, tensors, (), dict(x))
            return functional_call(self.model, tensors, (x,))

    def outputs_fn(self, theta: Tensor, x: Any) -> Tensor:
        """Network outputs f(x; theta) as a pure function of the flat vector (usable under torch.func)."""
        if self._hook_gives_losses:
            raise ConfigError(
                "this measurement needs the network outputs (Gauss-Newton, margins, ...), which a "
                "batch_loss= hook does not give: pass forward=(model, batch) -> (outputs, targets) instead"
            )
        if self._hooked is not None:
            return self._outputs_targets(theta, x, None)[0]
        return model_output(self._call(theta, x))

    def _outputs_targets(self, theta: Tensor, x: Any, y: Any, bn: str | None = None) -> tuple[Tensor, Any]:
        """(outputs, targets) of a chunk; with a forward= hook the targets are the hook's."""
        if self._hooked is None or self._hook_gives_losses:
            if self._hook_gives_losses:
                self.outputs_fn(theta, x)  # raises: a batch_loss= hook gives no outputs
            return model_output(self._call(theta, x, bn)), y
        result = self._call(theta, x, bn)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ConfigError(
                f"forward= must return (outputs, targets), got {type(result).__name__}"
                + (f" of length {len(result)}" if isinstance(result, (tuple, list)) else "")
            )
        return model_output(result[0]), result[1]

    def losses_fn(self, theta: Tensor, x: Any, y: Any) -> Tensor:
        """Per-example losses l_i(theta) on ``(x, y)`` (pure function)."""
        if self._hook_gives_losses:
            losses = self._call(theta, x)
            if not isinstance(losses, Tensor) or losses.dim() != 1:
                shape = tuple(getattr(losses, "shape", ()))
                raise ConfigError(f"batch_loss= must return one loss per example (shape [m]), got {shape}")
            return losses
        return self._loss(*self._outputs_targets(theta, x, y))

    def _one_example_forward(self) -> Any:
        """One forward pass on the first example (for diagnosing a failed product)."""
        for x, _ in self.chunks():
            return self._call(self.theta, select(x, slice(0, 1)))
        return None

    def _chunk_sum(self, theta: Tensor, x: Any, y: Any) -> Tensor:
        return self.losses_fn(theta, x, y).sum() / self.n

    def _single_loss(self, theta: Tensor, xi: Any, yi: Any) -> Tensor:
        return self.losses_fn(theta, _unsqueeze(xi), _unsqueeze(yi))[0]

    # ------------------------------------------------------------------ full-data quantities
    def losses(self, theta: Tensor | None = None) -> Tensor:
        """All per-example losses, shape ``[n]`` (with ``dist=``: this process's ``[n_local]``)."""
        theta = self.theta if theta is None else self._check_vec(theta)
        with torch.no_grad():
            return torch.cat([self.losses_fn(theta, x, y) for x, y in self.chunks()])

    def outputs(self, theta: Tensor | None = None) -> Tensor:
        """Network outputs on all examples (with ``dist=``: this process's examples)."""
        theta = self.theta if theta is None else self._check_vec(theta)
        with torch.no_grad():
            return torch.cat([self.outputs_fn(theta, x) for x, _ in self.chunks()])

    def zero_predictor_value(self) -> float:
        """(1/n) sum_i l(0, y_i): the loss of the predictor whose outputs are all zero (a reference scale)."""
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            for x, y in self.chunks():
                f, targets = self._outputs_targets(self.theta, x, y)
                total += self._loss(torch.zeros_like(f), targets).sum()
        return float(self.allreduce(total) / self.n)

    def value(self, theta: Tensor | None = None) -> float:
        """I(theta) = (1/n) sum_i l_i(theta)."""
        return float(self.allreduce(self.losses(theta).sum()) / self.n)

    @_explained
    def grad(self, theta: Tensor | None = None) -> Tensor:
        """Full gradient (1/n) sum_i grad l_i(theta), shape ``[p]``."""
        return self._value_and_grad(self.theta if theta is None else self._check_vec(theta))[1]

    def _value_and_grad(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """(I(theta), grad I(theta)) from one pass per chunk, summed over the processes."""
        value = torch.zeros((), dtype=self.dtype, device=self.device)
        g = torch.zeros_like(theta)
        for x, y in self.chunks():
            gc, vc = grad_and_value(self._chunk_sum)(theta, x, y)
            g += gc
            value += vc.detach()
        return self.allreduce(value), self.allreduce(g)

    def hvp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        """Hessian-vector product H v, H = (1/n) sum_i hess l_i(theta).

        Reverse-over-reverse (double backward, as PyHessian): at the base point with a single chunk the
        gradient graph is built once and reused, so each product is one backward pass through it; otherwise
        each chunk builds its gradient graph and runs one backward pass through it.
        """
        v = self._check_vec(v)
        return self.hvp_block(v.unsqueeze(1), theta)[:, 0]

    @_explained
    def hvp_block(self, V: Tensor, theta: Tensor | None = None) -> Tensor:
        """Block Hessian product H V for V of shape ``[p, b]`` (b vectors as columns), shape ``[p, b]``.

        Equal to ``b`` calls of :meth:`hvp` to rounding, but one graph serves the whole block: one batched
        backward pass (``is_grads_batched``) through the cached gradient graph at the base point with a
        single chunk, else through each chunk's gradient graph.
        """
        V = self._check_block(V)
        if V.shape[1] == 0:
            return V.clone()
        plan = self._structured_plan()
        if plan is not None:
            return self.allreduce(sum(plan.hvp_block(p, V) for p in self._mlp_primals(plan, theta)))
        if theta is None and self._single_chunk():
            leaf, g = self._gradient_graph()
            return self.allreduce(_backward_block(g, leaf, V, retain=True))
        theta = self.theta if theta is None else self._check_vec(theta)
        out = torch.zeros_like(V)
        for x, y in self.chunks():
            leaf = theta.detach().requires_grad_(True)
            with torch.enable_grad():
                (g,) = torch.autograd.grad(self._chunk_sum(leaf, x, y), leaf, create_graph=True)
            out += _backward_block(g, leaf, V, retain=False)
        return self.allreduce(out)

    @_explained
    def hessian_quadratic_forms(self, V: Tensor) -> Tensor:
        """v_j^T H v_j for the columns of V ``[p, b]`` at the base point, float64 ``[b]``.

        Equal to ``(V * hvp_block(V)).sum(0)`` to rounding; for a plain MLP (``structured_products``) by
        second-order forward mode at about half the cost of the products (``sequential.py``). Hutchinson and
        Hutch++ use it for every vector whose product itself is not needed.
        """
        V = self._check_block(V)
        plan = self._structured_plan()
        if plan is None or V.shape[1] == 0:
            return col_dots(V, self.hvp_block(V))
        return self.allreduce(sum(plan.quadratic_forms(p, V) for p in self._mlp_primals(plan)))

    def _structured_plan(self) -> MLPPlan | None:
        """The closed-form MLP product plan when it applies (see ``structured_products``)."""
        if not self.structured_products or self._mlp_plan is None or not self._source.is_tensor:
            return None
        return self._mlp_plan if isinstance(self._source.x, Tensor) else None

    def _mlp_primals(self, plan: MLPPlan, theta: Tensor | None = None) -> Iterator[Any]:
        """The MLP's forward quantities, one per chunk, at ``theta`` (default the base point, where with one
        chunk they are built once and kept); products are sums over them."""
        if theta is None and self._single_chunk():
            yield self._primal_at_base(plan)
            return
        theta = self.theta if theta is None else self._check_vec(theta)
        for x, y in self.chunks():
            yield plan.primal(self._fixed, theta, x, self, y)

    def _primal_at_base(self, plan: MLPPlan) -> Any:
        """The MLP's forward quantities at the base point on all data (one chunk), built once."""
        if self._mlp_cache is None:
            self._mlp_cache = plan.primal(self._fixed, self.theta, self._source.x, self, self._source.y)
        return self._mlp_cache

    def _single_chunk(self) -> bool:
        return self._source.single_chunk()

    def _gradient_graph(self) -> tuple[Tensor, Tensor]:
        """(leaf, gradient with its graph) at the base point on all data (built once, see :meth:`hvp`)."""
        if self._graph_cache is None:
            leaf = self.theta.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                loss = self.losses_fn(leaf, self.x, self.y).sum() / self.n
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
            f, targets = self._outputs_targets(leaf, x, y)
        jv = self._jvp_block(theta, x, f, leaf, V)  # [b, *f.shape]
        m = len(f)
        q = self.output_hessians(f, targets).reshape(m, f[0].numel(), -1)
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

    def allreduce(self, t: Tensor) -> Tensor:
        """Sum a data-summed result over the processes that hold the other shards of the data.

        Every data-summing product (value, grad, hvp, ggn_vp, the block products) passes its result through
        here, and so do the estimators' own sums over examples (the non-uniformity's S v, landscape points).
        Identity in a single process; ``all_reduce`` (SUM) over the group with ``dist=``.
        """
        return t if self._group is None else allreduce_sum(t, self._group)

    def clear_cache(self) -> None:
        """Drop the cached gradient graph and forward quantities (frees memory)."""
        self._drop_caches()

    def _drop_caches(self) -> None:
        self._graph_cache = None
        self._mlp_cache = None

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

    @_explained
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
        return self.allreduce(out)

    # ------------------------------------------------------------------ per-example quantities
    @_explained
    def per_example_grads(self, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """Per-example gradients grad l_i for the examples ``(x, y)``, shape ``[m, p]`` (vmap).

        Requires ``bn="eval"`` (a single example has no batch statistics).
        """
        self._require_eval_bn("per-example gradients")
        theta = self.theta if theta is None else self._check_vec(theta)
        return vmap(grad(self._single_loss), in_dims=(None, 0, _dim(y)))(theta, x, y)

    @_explained
    def per_example_hvp(self, v: Tensor, x: Tensor, y: Tensor, theta: Tensor | None = None) -> Tensor:
        """Per-example Hessian-vector products H_i v_i, shape ``[m, p]``.

        ``v`` is one vector ``[p]`` (the same for every example) or one per example ``[m, p]``.
        Used for Sigma v = (1/n) sum_i H_i (H_i v) - H (H v) (Wu, Ma & E 2018, Def. 3).
        """
        self._require_eval_bn("per-example Hessian-vector products")
        theta = self.theta if theta is None else self._check_vec(theta)
        v = v.to(self.device, self.dtype)

        def forward_over_reverse(xi: Any, yi: Any, vi: Tensor) -> Tensor:
            return jvp(lambda t: grad(self._single_loss)(t, xi, yi), (theta,), (vi,))[1]

        def reverse_over_reverse(xi: Any, yi: Any, vi: Tensor) -> Tensor:  # H symmetric: v^T H = H v
            return vjp(lambda t: grad(self._single_loss)(t, xi, yi), theta)[1](vi)[0]

        in_dims = (0, _dim(y), 0 if v.dim() == 2 else None)
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


class _Hooked(nn.Module):
    """The model under a user hook ``hook(model, batch)``, as one module for ``functional_call``."""

    def __init__(self, model: nn.Module, hook: Callable[[nn.Module, Any], Any]) -> None:
        super().__init__()
        self.model = model
        self._fm_hook = hook

    def forward(self, batch: Any) -> Any:
        return self._fm_hook(self.model, batch)


def model_output(out: Any) -> Tensor:
    """The output tensor of a model's result: the tensor itself, ``["logits"]`` / ``.logits`` of a mapping or
    model-output object (HuggingFace), else the first entry of a tuple."""
    if isinstance(out, Tensor):
        return out
    logits = out.get("logits") if isinstance(out, Mapping) else getattr(out, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise ConfigError(
        f"the model returned {type(out).__name__}, not a tensor: flatminima reads a tensor, a mapping / "
        "object with 'logits', or a tuple whose first entry is the output tensor; otherwise pass "
        "forward=(model, batch) -> (outputs, targets)"
    )


def _unsqueeze(tree: Any) -> Any:
    return map_tensors(lambda t: t.unsqueeze(0), tree)


def _dim(tree: Any) -> int | None:
    """vmap's in_dim for a chunk's targets: 0, or None when there are none (hooks)."""
    return None if tree is None else 0


def _is_batches(data: Any) -> bool:
    """Whether ``data`` passed as ``x`` is a source of batches (a loader, a list of batches), not inputs."""
    return (
        isinstance(data, Iterable)
        and not isinstance(data, (Tensor, str, bytes))
        and not hasattr(data, "__array__")
    )
