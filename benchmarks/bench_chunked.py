# ruff: noqa: E501
"""Chunked Hessian products against PyHessian's data-loader mode (issue 15, "Chunked products").

Run:  .venv/bin/python benchmarks/bench_chunked.py [--rounds 3] [--hvps 5]
Model: a VGG-style CNN on 3x32x32 (conv 3-32, pool, conv 32-64, pool, conv 64-128, pool, Linear 2048-100, ReLU,
Linear 100-10; 299,158 weights), random weights, n = 512 random inputs with random labels, cross-entropy,
float32, chunks of 128 examples (ours: ``Objective(..., chunk_size=128)``; PyHessian: ``hessian(model,
criterion, dataloader=<4 batches of 128>, cuda=False)``, whose products loop over the batches and weight each
batch's HVP by its size — the same full-data operator).
Baseline: PyHessian 0.1, installed next to the benchmark (``.venv/bin/pip install --no-deps --target
benchmarks/.cache/pyhessian pyhessian``).
Timed, interleaved in rounds (median seconds; ratio = PyHessian / ours, > 1 means we are faster):
  hvp        ``--hvps`` products with one random vector, per product (ours ``Objective.hvp``; PyHessian
             ``dataloader_hv_product``), after one warm-up product each
  sharpness  top eigenvalue from a fresh object (graph construction counted): ours ``sharpness`` (tol 1e-4),
             PyHessian ``eigenvalues(top_n=1)`` at its defaults (tol 1e-3, maxIter 100); products are
             printed, so the per-product cost compares too
The products of the two are checked to agree (relative difference printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / ".cache" / "pyhessian"))

from _fixtures import interleaved
from flatminima import Objective
from flatminima.curvature import sharpness

N, CHUNK = 512, 128


def vgg_style() -> nn.Sequential:
    """conv-pool blocks 32/64/128 on 3x32x32, then 2048 -> 100 -> 10 (299,158 weights)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2048, 100), nn.ReLU(), nn.Linear(100, 10),
    )  # fmt: skip


def _pyhessian(model, batches):
    from pyhessian import hessian

    return hessian(model, nn.CrossEntropyLoss(), dataloader=batches, cuda=False)


def _flat(vs) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in vs])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--hvps", type=int, default=5)
    ap.add_argument("--only", default="hvp,sharpness")
    args = ap.parse_args()
    try:
        import pyhessian  # noqa: F401
    except ImportError:
        sys.exit("error: PyHessian is not installed (see the module docstring for the command)")
    from pyhessian.utils import group_product

    torch.manual_seed(0)
    model = vgg_style().eval()
    x, y = torch.randn(N, 3, 32, 32), torch.randint(0, 10, (N,))
    batches = [(x[i : i + CHUNK], y[i : i + CHUNK]) for i in range(0, N, CHUNK)]
    obj = Objective(model, loss="cross_entropy", x=x, y=y, chunk_size=CHUNK)
    print(f"VGG-style CNN: {obj.num_params:,} weights, n = {N}, chunks of {CHUNK}, torch threads {torch.get_num_threads()}")
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    v = torch.randn(obj.num_params, generator=torch.Generator().manual_seed(1))
    ph = _pyhessian(model, batches)
    v_list = [t.reshape(p.shape).clone() for t, p in zip(obj.unflatten(v).values(), ph.params, strict=True)]
    ours_hv = obj.hvp(v)
    _, theirs_hv = ph.dataloader_hv_product(v_list)
    theirs_hv = _flat(theirs_hv)
    print(f"products agree: rel. diff {float((ours_hv - theirs_hv).norm() / ours_hv.norm()):.1e}  "
          f"(v.Hv ours {float(v @ ours_hv):.6g}, PyHessian {float(group_product(theirs_hv, v)):.6g})")

    def ph_sharpness():
        for p in model.parameters():
            p.grad = None
        h = _pyhessian(model, batches)
        calls = [0]
        inner = h.dataloader_hv_product

        def counted(vv):
            calls[0] += 1
            return inner(vv)

        h.dataloader_hv_product = counted
        torch.manual_seed(0)
        eigs, _ = h.eigenvalues(top_n=1)
        return float(eigs[0]), calls[0]

    def our_sharpness():
        est = sharpness(Objective(model, loss="cross_entropy", x=x, y=y, chunk_size=CHUNK), tol=1e-4)
        return est.value, est.matvecs

    def hvps(fn):
        def run():
            for _ in range(args.hvps):
                fn()
            return None, args.hvps

        return run

    table = {
        "hvp": {"ours": hvps(lambda: obj.hvp(v)), "pyhessian": hvps(lambda: ph.dataloader_hv_product(v_list))},
        "sharpness": {"ours": our_sharpness, "pyhessian": ph_sharpness},
    }
    for what in args.only.split(","):
        times, out = interleaved(table[what], args.rounds, what, lambda r: f"(value, products) {r}")
        med = {k: statistics.median(t) for k, t in times.items()}
        per = {k: med[k] / out[k][1] for k in med}
        print(f"{what}: ours {med['ours']:.2f} s ({out['ours'][1]} products, {per['ours']:.3f} s/product); "
              f"PyHessian {med['pyhessian']:.2f} s ({out['pyhessian'][1]} products, {per['pyhessian']:.3f} s/product)  "
              f"->  PyHessian/ours {med['pyhessian'] / med['ours']:.2f}x total, {per['pyhessian'] / per['ours']:.2f}x per product",
              flush=True)  # fmt: skip
    print("load:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())


if __name__ == "__main__":
    os.environ.setdefault("FLATMINIMA_PROGRESS", "0")
    main()
