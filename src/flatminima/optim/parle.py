"""Elastic-SGD (thesis eq. 5.4) and Parle (thesis Sec. 5.3, eq. 5.8): n replicas x^a coupled to a reference x.

How replicas are held: the model's parameters always hold the reference x (so after ``step`` the model is
the consensus and can be evaluated or checkpointed as usual); the replicas live in the optimizer state as one
stacked tensor per parameter, ``optimizer.state[p]["replicas"]`` of shape ``[n, *p.shape]`` (started at x on
the first step; ``optimizer.replicas()`` returns them). A step loads each replica in turn into the model's
parameters and calls the closure, all in one process, so any model, loss and data pipeline works unchanged.
Per-replica data splits: if the closure accepts a keyword ``replica``, it is called as ``closure(replica=a)``
and may draw from replica a's shard; otherwise every call simply draws the next fresh minibatch.
Vectorized replicas: pass a :class:`VmapReplicaClosure` instead; then every inner step evaluates all n
replicas in one ``torch.func.vmap`` call (one batched forward/backward instead of n), and the replica updates
run on the stacked tensors. This helps when one replica is too small to keep the hardware busy (many small
models, GPUs); for large models the sequential path needs less memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from ..errors import ConfigError
from ._common import (
    Closure,
    CountedOptimizer,
    accepts_keyword,
    advance_scope,
    call_closure,
    check_fraction,
    check_int,
    check_positive,
    grads_of,
    group_value,
    inv,
    make_generator,
    momentum_direction,
    noise_ahead_possible,
    require_closure,
    scoped,
)
from .entropy import InnerGroup, inner_loop

__all__ = ["ElasticSGD", "Parle", "VmapReplicaClosure"]


def _scoping(scoping: float | None, batches_per_epoch: int | None) -> float:
    """Per-outer-step shrink of eq. 5.10: gamma, rho <- (1 - scoping) gamma, rho with scoping = 1/(2B) from
    ``batches_per_epoch`` B, or ``scoping`` itself."""
    if scoping is not None and batches_per_epoch is not None:
        raise ConfigError("pass either scoping= or batches_per_epoch= (eq. 5.10 uses 1 - 1/(2B)), not both")
    if batches_per_epoch is not None:
        return 1.0 / (2.0 * check_int("batches_per_epoch", batches_per_epoch))
    return check_fraction("scoping", scoping or 0.0)


class ReplicaOptimizer(CountedOptimizer):
    """Replica storage, the rho scoping and the reference update shared by Elastic-SGD and Parle.

    Reference update (eq. 5.8d / 5.4b): x <- x - ref_lr (n / rho) (x - mean_a x^a). The thesis's normalized
    choice ref_lr = rho / n (Sec. 5.3.2, the default ``ref_lr=None``) makes it x <- mean_a x^a, with no
    momentum (Remark 5.3). We average the replicas *after* their update (Gauss-Seidel order, as in a
    parallel implementation where the master receives the replicas' new weights), so with n = 1 and
    rho = inf the model follows the single replica exactly.

    Hyper-parameters live in ``param_groups`` (``lr``, ``momentum``, ``nesterov``, ``weight_decay``, ``rho``
    (current value; scoping updates it after every step), ``rho_min``, ``scoping``, ``ref_lr``, and Parle's
    own); ``n_replicas`` is structural (the replicas' stacked tensors) and an attribute. Parameters with
    ``requires_grad=False`` get no replicas and are not moved. ``state_dict`` holds the replicas, the
    momentum buffers, t and the noise generator's state.
    """

    needs_closure = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        defaults: dict,
        n_replicas: int,
        rho: float,
        rho_min: float,
        scoping: float | None,
        batches_per_epoch: int | None,
        ref_lr: float | None,
        generator: torch.Generator | None,
        seed: int | None,
    ) -> None:
        check_positive("lr", defaults["lr"], allow_zero=True)
        check_fraction("momentum", defaults["momentum"])
        check_positive("weight_decay", defaults["weight_decay"], allow_zero=True)
        rho = check_positive("rho", rho, allow_inf=True)
        rho_min = check_positive("rho_min", rho_min, allow_zero=True)
        defaults = dict(
            defaults,
            rho=max(rho, rho_min),
            rho_min=rho_min,
            scoping=_scoping(scoping, batches_per_epoch),
            ref_lr=None if ref_lr is None else check_positive("ref_lr", ref_lr, allow_zero=True),
        )
        super().__init__(params, defaults)
        self.n_replicas = check_int("n_replicas", n_replicas)
        self.generator = make_generator(generator, seed)
        self.noise_ahead = noise_ahead_possible(self.generator) and generator is None  # seed=: ours alone
        self.t = 0

    scope_keys: tuple[str, ...] = ("rho",)

    @property
    def rho(self) -> float:
        """rho_k = max(rho0 (1 - 1/(2B))^{floor(k/L)}, rho_min) (eq. 5.10; k/L counts outer steps), of the
        first param group."""
        return scoped(self.param_groups[0], "rho")

    def all_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in self.trainable(g)]

    def replicas(self) -> list[Tensor]:
        """The stacked replicas ``[n, *p.shape]`` per trainable parameter (created at x if no step was taken
        yet)."""
        out = []
        for p in self.all_params():
            st = self.state[p]
            if "replicas" not in st:
                st["replicas"] = p.detach().unsqueeze(0).repeat(self.n_replicas, *([1] * p.dim())).clone()
            out.append(st["replicas"])
        return out

    def _closure_kwargs(self, closure: Closure, a: int | None) -> dict:
        return {"replica": a} if a is not None and accepts_keyword(closure, "replica") else {}

    def replica_direction(
        self,
        closure: Closure,
        active: list[tuple[dict, list[Tensor]]],
        params: list[Tensor],
        xa: list[Tensor],
        a: int | None,
        x: list[Tensor],
    ) -> tuple[list[Tensor], Tensor]:
        """Direction d^a (the replica moves by -lr d^a) and the loss at x^a; ``params`` hold x^a on entry and
        are split into the groups of ``active`` in order."""
        raise NotImplementedError

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        closure = require_closure(closure, type(self).__name__)
        active = self.active_groups()
        params = self.all_params()
        reps = self.replicas()
        x = [p.detach().clone() for p in params]
        dirs = [torch.empty_like(r) for r in reps]
        with self.undo_on_error(params, x):
            losses = self._directions(closure, active, params, reps, x, dirs)
        i = 0
        for group, ps in active:
            k = len(ps)
            gd = momentum_direction(
                self.state, ps, dirs[i : i + k], group["momentum"], group["nesterov"], key="replica_momentum"
            )
            torch._foreach_add_(reps[i : i + k], gd, alpha=-group["lr"])
            means = [r.mean(dim=0) for r in reps[i : i + k]]
            if group["ref_lr"] is None:
                torch._foreach_copy_(ps, means)
            else:
                torch._foreach_copy_(ps, x[i : i + k])
                step = group["ref_lr"] * self.n_replicas * inv(scoped(group, "rho"))
                torch._foreach_add_(ps, torch._foreach_sub(x[i : i + k], means), alpha=-step)
            i += k
        advance_scope(self.param_groups, self.scope_keys)
        self.t += 1
        return torch.tensor(sum(losses) / len(losses))

    def _directions(
        self,
        closure: Closure,
        active: list[tuple[dict, list[Tensor]]],
        params: list[Tensor],
        reps: list[Tensor],
        x: list[Tensor],
        dirs: list[Tensor],
    ) -> list[float]:
        """Fill ``dirs[i][a]`` with every replica's direction; return the replicas' losses."""
        losses: list[float] = []
        if getattr(closure, "vectorized", False):  # all replicas at once (VmapReplicaClosure)
            vec = closure
            y = [r.clone() for r in reps]
            xb = [xi.unsqueeze(0).expand_as(r) for xi, r in zip(x, reps, strict=True)]
            d, loss = self.replica_direction(lambda: vec(y), active, y, reps, None, xb)
            torch._foreach_copy_(dirs, d)
            losses.append(float(loss))
        for a in range(0 if losses else self.n_replicas):
            xa = [r[a] for r in reps]
            torch._foreach_copy_(params, xa)
            d, loss = self.replica_direction(closure, active, params, xa, a, x)
            losses.append(float(loss))
            for buf, di in zip(dirs, d, strict=True):
                buf[a].copy_(di)
        return losses


def _split(tensors: list[Tensor], active: list[tuple[dict, list[Tensor]]]) -> list[list[Tensor]]:
    """``tensors`` (one per trainable parameter, in order) cut into the groups of ``active``."""
    out, i = [], 0
    for _, ps in active:
        out.append(tensors[i : i + len(ps)])
        i += len(ps)
    return out


def _elastic_pull(
    d: list[Tensor], active: list[tuple[dict, list[Tensor]]], xa: list[Tensor], x: list[Tensor]
) -> list[Tensor]:
    """d + (x^a - x) / rho per group (eqs. 5.4a, 5.8c); groups with rho = inf keep d."""
    out = []
    for (group, _), di, xi, ri in zip(active, _split(d, active), _split(xa, active), _split(x, active),
                                      strict=True):  # fmt: skip
        coupling = inv(scoped(group, "rho"))
        out += torch._foreach_add(di, torch._foreach_sub(xi, ri), alpha=coupling) if coupling else di
    return out


class ElasticSGD(ReplicaOptimizer):
    """Elastic-SGD (thesis eq. 5.4): for each replica a, on a fresh minibatch,
    x^a <- x^a - lr [grad f_b(x^a) + (x^a - x) / rho_k], then x <- x - ref_lr (n / rho_k) (x - mean_a x^a)
    (default ref_lr = rho_k / n: x <- mean_a x^a). Optional Nesterov ``momentum`` on the replicas,
    ``weight_decay`` on the gradient, rho scoping by eq. 5.10 with clipping at ``rho_min`` (thesis 0.1).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        n_replicas: int = 3,
        rho: float = 1.0,
        rho_min: float = 0.1,
        scoping: float | None = None,
        batches_per_epoch: int | None = None,
        momentum: float = 0.0,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ref_lr: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
        super().__init__(
            params, defaults, n_replicas, rho, rho_min, scoping, batches_per_epoch, ref_lr, generator, seed
        )

    def replica_direction(
        self,
        closure: Closure,
        active: list[tuple[dict, list[Tensor]]],
        params: list[Tensor],
        xa: list[Tensor],
        a: int | None,
        x: list[Tensor],
    ) -> tuple[list[Tensor], Tensor]:
        loss = call_closure(closure, params, **self._closure_kwargs(closure, a))
        d = []
        for (group, _), gi, xi in zip(active, _split(grads_of(params), active), _split(xa, active),
                                      strict=True):  # fmt: skip
            wd = group["weight_decay"]
            d += torch._foreach_add(gi, xi, alpha=wd) if wd else gi
        return _elastic_pull(d, active, xa, x), loss


class Parle(ReplicaOptimizer):
    """Parle (thesis eq. 5.8, "Entropy-SGD in an inner loop of Elastic-SGD") with the normalized learning
    rates of Sec. 5.3.2 (eta^(0) = ``inner_lr``, eta^(1) = lr gamma_k, eta^(2) = lr, eta^(3) = rho_k / n):

        y^a <- y^a - inner_lr [grad f_b(y^a) + (y^a - x^a) / gamma_k]   L times from y^a = x^a    (5.8a)
        z^a <- alpha z^a + (1 - alpha) y^a                              (z^a starts at x^a)        (5.8b)
        x^a <- x^a - lr (x^a - z^a) - lr (x^a - x) / rho_k                                         (5.8c)
        x   <- mean_a x^a                                                                          (5.8d)

    Defaults (Sec. 5.3.2): L = 25, alpha = 0.25, gamma0 = 100, rho0 = 1, scoping
    gamma_k = gamma0 (1 - 1/(2B))^{floor(k/L)}, rho_k likewise (eq. 5.10; pass ``batches_per_epoch`` B or
    ``scoping``), gamma clipped at ``gamma_min`` = 1 and rho at ``rho_min`` = 0.1; the thesis uses Nesterov
    0.9 on y^a (``inner_momentum``) and x^a (``momentum``), none on x (defaults here 0: plain eq. 5.8).
    Ch. 5 adds no external noise (``temperature`` = 0); a positive one adds sqrt(2 inner_lr T) N.
    ``inner_lr`` defaults to ``lr`` (eta^(0) = eta_0, the initial learning rate). gamma or rho = inf switch
    their terms off. Special cases (thesis Sec. 5.3.1, tested): SGD (L = 1, n = 1, gamma = rho = inf; step
    lr (1 - alpha) inner_lr), Elastic-SGD (L = 1, gamma = inf), Entropy-SGD (n = 1, rho = inf).
    ``L``, ``inner_lr``, ``alpha``, ``gamma``, ``gamma_min``, ``inner_momentum`` and ``temperature`` live in
    ``param_groups`` with the Elastic-SGD ones (``L`` shared by all groups).
    """

    scope_keys = ("gamma", "rho")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 0.1,
        n_replicas: int = 3,
        L: int = 25,
        inner_lr: float | None = None,
        alpha: float = 0.25,
        gamma: float = 100.0,
        rho: float = 1.0,
        gamma_min: float = 1.0,
        rho_min: float = 0.1,
        scoping: float | None = None,
        batches_per_epoch: int | None = None,
        momentum: float = 0.0,
        inner_momentum: float = 0.0,
        nesterov: bool = True,
        temperature: float = 0.0,
        weight_decay: float = 0.0,
        ref_lr: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        gamma = check_positive("gamma", gamma, allow_inf=True)
        gamma_min = check_positive("gamma_min", gamma_min, allow_zero=True)
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            L=check_int("L", L),
            inner_lr=check_positive("inner_lr", lr if inner_lr is None else inner_lr),
            alpha=check_fraction("alpha", alpha),
            gamma=max(gamma, gamma_min),
            gamma_min=gamma_min,
            inner_momentum=check_fraction("inner_momentum", inner_momentum),
            temperature=check_positive("temperature", temperature, allow_zero=True),
        )
        super().__init__(
            params, defaults, n_replicas, rho, rho_min, scoping, batches_per_epoch, ref_lr, generator, seed
        )

    L = group_value("L")
    inner_lr = group_value("inner_lr")
    alpha = group_value("alpha")
    temperature = group_value("temperature")
    inner_momentum = group_value("inner_momentum")

    @property
    def gamma(self) -> float:
        """gamma_k = max(gamma0 (1 - 1/(2B))^{floor(k/L)}, gamma_min) (eq. 5.10), of the first group."""
        return scoped(self.param_groups[0])

    def replica_direction(
        self,
        closure: Closure,
        active: list[tuple[dict, list[Tensor]]],
        params: list[Tensor],
        xa: list[Tensor],
        a: int | None,
        x: list[Tensor],
    ) -> tuple[list[Tensor], Tensor]:
        z = [t.clone() for t in xa]
        groups = [
            InnerGroup.of(group, p, xi, zi)
            for (group, _), p, xi, zi in zip(
                active, _split(params, active), _split(xa, active), _split(z, active), strict=True
            )
        ]
        steps = check_int("L", self.shared("L"))
        kwargs = self._closure_kwargs(closure, a)
        loss = inner_loop(closure, groups, steps, self.generator, kwargs, self.noise_ahead)
        return _elastic_pull(torch._foreach_sub(xa, z), active, xa, x), loss


class VmapReplicaClosure:
    """Vectorized replica closure for :class:`Parle` / :class:`ElasticSGD`: ``closure(stacked)`` evaluates
    ``loss_fn(model(x_a), y_a)`` at every replica's weights (``stacked``: one ``[n, *p.shape]`` tensor per
    parameter of ``model``, in ``model.parameters()`` order, which must be the order the optimizer holds)
    with ``torch.func.vmap`` over replicas, stores the per-replica gradients in ``.grad`` of the stacked
    tensors and returns the mean loss. ``sample_batches()`` must return FRESH minibatches for all replicas,
    ``(x [n, B, ...], y [n, B, ...])`` (the same batch repeated n times, or one shard per replica).
    Buffers (e.g. batch-norm statistics) are shared and read-only; the model is not modified.
    """

    vectorized = True

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        sample_batches: Callable[[], tuple[Tensor, Tensor]],
    ) -> None:
        self.model, self.loss_fn, self.sample_batches = model, loss_fn, sample_batches
        self.names = [k for k, p in model.named_parameters() if p.requires_grad]
        self.shapes = [p.shape for p in model.parameters() if p.requires_grad]

    def _loss(self, thetas: tuple[Tensor, ...], x: Tensor, y: Tensor) -> Tensor:
        tensors = {k: b for k, b in self.model.named_buffers()}
        tensors.update(zip(self.names, thetas, strict=True))
        return self.loss_fn(functional_call(self.model, tensors, (x,)), y)

    def __call__(self, stacked: list[Tensor]) -> Tensor:
        if [t.shape[1:] for t in stacked] != self.shapes:
            raise ConfigError("VmapReplicaClosure: the optimizer's parameters are not the model's, in order")
        x, y = self.sample_batches()
        if len(x) != len(stacked[0]) or len(y) != len(x):
            raise ConfigError(
                f"sample_batches must return one batch per replica ({len(stacked[0])}), got {len(x)}"
            )
        with torch.enable_grad():
            grads, losses = vmap(grad_and_value(self._loss))(tuple(stacked), x, y)
        for t, g in zip(stacked, grads, strict=True):
            t.grad = g.detach()
        return losses.detach().mean()
