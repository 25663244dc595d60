"""2-D loss slice (51 x 51) of a wu-fnn-sized MLP (784-500-500-500-10, n = 1000): batched vs point by point.

Ours: ``flatminima.landscape.plane_evaluator`` as ``slice_2d`` uses it (set up once per grid: the first
layer's output assembled from three precomputed passes; on CPU the layers above run point by point in
preallocated, cache-resident buffers, see ``landscape/evaluate.py``), called row by row. Baseline: what the
loss-landscape scripts of Li et al. 2018 do per grid point: write w + a d1 + b d2 into the model's parameters,
then evaluate loss and accuracy over a DataLoader (batch size 128), repeat. The baseline is timed on
``--baseline-rows`` rows of the grid (its cost per point is constant), interleaved with ours on the same rows,
and extrapolated to the full grid; the values of those rows are compared.

Threads: ``--threads 1`` (the default) gives both sides one torch thread; ``--threads 0`` keeps torch's
default (one per core). On a shared, oversubscribed machine several threads make the baseline's many small
GEMMs (batches of 128) wait on each other and inflate the ratio several-fold, so compare thread counts only
on an idle machine.

On a CPU both sides are compute bound. Ours skips the first layer's per-point matmul (784 x 500 of the 898k
weights) and the baseline's per-batch overhead, but must still run the 500 x 500 layers per point: at one
thread their GEMMs alone (~1 GFLOP per point at ~150 GFLOP/s) take ~7 ms against the baseline's ~21 ms per
point, a ceiling near 3x. On a GPU the per-point launch and Python overhead of the baseline dominate instead.

Run: ``.venv/bin/python benchmarks/bench_slice.py [--points 51] [--baseline-rows 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

os.environ.setdefault("FLATMINIMA_PROGRESS", "0")

from flatminima import Objective
from flatminima.landscape import plane_evaluator, random_directions


def build(n: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    widths = [784, 500, 500, 500, 10]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return model, x, y


def baseline_rows(model, x, y, origin_sd, d1, d2, xs, ys_rows, batch_size=128):
    """Li et al.'s loop: set weights, evaluate over a DataLoader, per grid point."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    criterion = nn.CrossEntropyLoss()
    names = [k for k, _ in model.named_parameters()]
    losses = np.zeros((len(ys_rows), len(xs)))
    accs = np.zeros_like(losses)
    model.eval()
    for j, b in enumerate(ys_rows):
        for i, a in enumerate(xs):
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.data = origin_sd[k] + a * d1[k] + b * d2[k]
                total, correct, count = 0.0, 0, 0
                for xb, yb in loader:
                    out = model(xb)
                    total += criterion(out, yb).item() * len(xb)
                    correct += out.max(1)[1].eq(yb).sum().item()
                    count += len(xb)
            losses[j, i], accs[j, i] = total / count, correct / count
    assert names
    return losses, accs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=51)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--baseline-rows", type=int, default=3)
    ap.add_argument("--batch-points", type=int, default=16)  # used off CPU / by the vmap path
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, x, y = build(args.n)
    obj = Objective(model, "cross_entropy", x, y)
    d = random_directions(obj, 2, seed=0)
    xs = np.linspace(-1.0, 1.0, args.points)
    ys = np.linspace(-1.0, 1.0, args.points)
    print(
        f"model 784-500-500-500-10 ({obj.num_params} params), n={args.n}, grid {args.points}x{args.points}, "
        f"torch threads {torch.get_num_threads()}"
    )

    # Rows are computed one at a time with the public slice_2d; on the baseline rows the baseline runs right
    # after ours on the same row, so both see the same machine load (this machine is shared and noisy).
    rows = set(np.linspace(0, args.points - 1, args.baseline_rows).round().astype(int).tolist())
    origin_sd = {k: v.clone() for k, v in obj.unflatten(obj.theta).items()}
    d1, d2 = obj.unflatten(d[0]), obj.unflatten(d[1])
    loss = np.zeros((args.points, args.points))
    t_ours = t_ours_rows = t_base = 0.0
    rel = acc_diff = 0.0
    t0 = time.perf_counter()
    evaluate = plane_evaluator(obj, obj.theta, d, batch_points=args.batch_points)
    evaluate(np.zeros((1, 2)))  # forces the one-off set-up (first-layer passes), timed here
    t_setup = time.perf_counter() - t0
    for j in range(args.points):
        t0 = time.perf_counter()
        row_loss, row_acc = evaluate(np.stack([xs, np.full_like(xs, ys[j])], axis=1))
        dt = time.perf_counter() - t0
        t_ours += dt
        loss[j] = row_loss
        if j in rows:
            t_ours_rows += dt + t_setup / args.points  # this row's share of the set-up
            t0 = time.perf_counter()
            ref_l, ref_a = baseline_rows(model, x, y, origin_sd, d1, d2, xs, ys[j : j + 1])
            t_base += time.perf_counter() - t0
            rel = max(rel, float(np.max(np.abs(row_loss - ref_l[0]) / np.abs(ref_l[0]))))
            acc_diff = max(acc_diff, float(np.max(np.abs(row_acc - ref_a[0]))))
    t_ours += t_setup
    n_pts = len(rows) * args.points
    per_point = 1e3 * t_ours / args.points**2
    print(f"ours (full grid, set-up {t_setup:.2f} s included): {t_ours:8.2f} s  ({per_point:.2f} ms/point)")
    ms_ours, ms_base = 1e3 * t_ours_rows / n_pts, 1e3 * t_base / n_pts
    base_full = t_base / n_pts * args.points**2
    print(f"on the {len(rows)} compared rows: ours {t_ours_rows:.2f} s ({ms_ours:.2f} ms/point), ", end="")
    print(f"baseline {t_base:.2f} s ({ms_base:.2f} ms/point)")
    print(f"baseline extrapolated to the full grid: {base_full:.1f} s")
    print(f"max relative loss difference on the compared rows: {rel:.2e}; ", end="")
    print(f"max accuracy difference: {acc_diff:.4f}")
    print(f"speed-up on the compared rows (baseline / ours, same conditions): {t_base / t_ours_rows:.2f}x")
    print(f"speed-up full grid (baseline extrapolated / ours measured): {base_full / t_ours:.2f}x")


if __name__ == "__main__":
    main()
