"""Entropy-SGD step time vs (L + 1) plain SGD steps on the same model and batch (goal: ratio <= 1.15).

One Entropy-SGD step makes L forward/backward passes plus the SGLD and averaging vector updates; the baseline
is (L + 1) steps of ``torch.optim.SGD`` (zero_grad, forward, backward, step), so the ratio measures our
per-step overhead. With thermal noise (temperature > 0) the step also draws L x (number of weights) Gaussians;
with ``seed=`` they are drawn one inner step ahead in a background thread (``GaussianNoise(ahead=)``), which
hides them when a core is free for that thread (``--threads 1`` on a 2-core machine) and cannot when every
core already computes. Usage:
``python benchmarks/bench_entropy_sgd.py [--L 20] [--repeats 7] [--threads 2] [--model mlp|lenet]``;
``FLATMINIMA_NOISE_THREAD=0`` draws the noise synchronously instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from flatminima.optim import EntropySGD


def _model(name: str) -> tuple[nn.Module, tuple[int, ...], str]:
    """The network, its input shape and a description: ``mlp`` (the default; 648k weights and little work
    per weight, the worst case for the thermal noise) or ``lenet`` (the thesis's MNIST LeNet, 131k)."""
    torch.manual_seed(0)
    if name == "lenet":
        from flatminima.models import build

        return build("lenet", input_shape=(1, 28, 28), num_classes=10), (1, 28, 28), "LeNet (thesis, MNIST)"
    net = nn.Sequential(nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 500), nn.ReLU(), nn.Linear(500, 10))
    return net, (784,), "784-500-500-10 MLP"


def _interleaved_best(fns: list, repeats: int, reset) -> list[float]:
    """Best-of-``repeats`` wall time of each function, timed in alternation so that load from other
    processes affects all of them alike; ``reset()`` (untimed) puts the model back at its initial weights
    before every call, so every method works at the same point of the landscape."""
    for fn in fns:
        reset()
        fn()  # warm-up
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            reset()
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--L", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", choices=["mlp", "lenet"], default="mlp")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    model, shape, label = _model(args.model)
    x, y = torch.randn(args.batch, *shape, generator=g), torch.randint(0, 10, (args.batch,), generator=g)

    init = {k: v.clone() for k, v in model.state_dict().items()}

    def closure() -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    sgd = torch.optim.SGD(model.parameters(), lr=0.01)

    def sgd_steps() -> None:
        for _ in range(args.L + 1):
            sgd.zero_grad()
            closure()
            sgd.step()

    def entropy(temperature: float) -> EntropySGD:
        return EntropySGD(
            model.parameters(),
            lr=1.0,
            L=args.L,
            inner_lr=0.01,
            gamma=100.0,
            temperature=temperature,
            momentum=0.9,
            seed=0,
        )

    ent0, ent1 = entropy(0.0), entropy(1e-8)
    flat = torch.empty(sum(p.numel() for p in model.parameters()))
    gen = torch.Generator().manual_seed(0)

    def noise_only() -> None:
        for _ in range(args.L):
            flat.normal_(generator=gen)

    t_sgd, t0, t1, t_rng = _interleaved_best(
        [sgd_steps, lambda: ent0.step(closure), lambda: ent1.step(closure), noise_only],
        args.repeats,
        lambda: model.load_state_dict(init),
    )
    print(f"model {label}, batch {args.batch}, L = {args.L}, threads {args.threads}")
    print(f"(L+1) SGD steps: {t_sgd * 1e3:.1f} ms")
    print(
        f"Entropy-SGD step, temperature 0 (minibatch noise only, thesis 4.6.1 / Ch. 5): {t0 * 1e3:.1f} ms"
        f"  ratio {t0 / t_sgd:.3f}  (goal <= 1.15)"
    )
    print(f"Entropy-SGD step, temperature 1e-8 (thermal noise): {t1 * 1e3:.1f} ms  ratio {t1 / t_sgd:.3f}")
    where = "on the noise thread, overlapping the gradients" if ent1.noise_ahead else "in line"
    print(f"  L x {flat.numel()} Gaussians (torch CPU RNG) alone take {t_rng * 1e3:.1f} ms; drawn {where}")
    if not ent1.noise_ahead:
        print(f"  ratio without the drawing: {(t1 - t_rng) / t_sgd:.3f}")


if __name__ == "__main__":
    main()
