"""Peak resident memory of ``fm.sharpness`` over a DataLoader: is it model + a few vectors + one batch?

Run:  .venv/bin/python benchmarks/bench_memory.py [--n 50000] [--batch 500] [--max-iter 3]

Data: ``--n`` CIFAR-shaped examples (3 x 32 x 32, 10 classes) that are *not* held in memory: a map-style
dataset draws example i from a generator seeded with i (as a dataset on disk would read it), served by a
``DataLoader(batch_size=--batch, shuffle=False)``. Model: ``fm.models.build("resnet", depth=8,
widths=(8, 16, 32))`` in eval mode. Each figure is the peak RSS (``resource.getrusage``, ru_maxrss) of a fresh
subprocess, so that they do not contaminate each other:

* ``base``: torch imported, the model built, one batch drawn and one forward pass (the floor every run pays);
* ``one batch``: one Hessian-vector product over a loader of a single batch (base + one batch's
  double-backward graph and its backward pass);
* ``loader``: ``fm.sharpness(Objective(model, "cross_entropy", data=loader), max_iter=--max-iter)``, all n;
* ``tensors``: the same with the n examples as one tensor (``chunk_size=--batch``), for contrast.

The goal (issue 12): loader - base <= (one batch - base) + a few parameter-sized vectors (Lanczos keeps one
basis vector per iteration, plus a handful of work vectors). The peak is reached in the first product, so
a few Lanczos iterations suffice (more iterations add only p-sized basis vectors, reported below).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
import torch
from torch.utils.data import DataLoader, Dataset
import flatminima as fm

mode, n, batch, max_iter = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(int(sys.argv[5]))

class Synthetic(Dataset):
    def __len__(self):
        return n
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 32, 32, generator=g), int(torch.randint(0, 10, (), generator=g))

def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

torch.manual_seed(0)
model = fm.models.build("resnet", (3, 32, 32), 10, depth=8, widths=(8, 16, 32)).eval()
p = sum(t.numel() for t in model.parameters())
loader = DataLoader(Synthetic(), batch_size=batch, shuffle=False)
xb, yb = next(iter(loader))
with torch.no_grad():
    model(xb)
out = {"p": p, "base_mb": rss_mb()}
start = time.perf_counter()
if mode == "one_batch":  # the same per-batch code path as the loader run, on one batch
    obj = fm.Objective(model, "cross_entropy", data=[(xb, yb)])
    obj.hvp(torch.randn(obj.num_params))
elif mode == "loader":
    est = fm.sharpness(fm.Objective(model, "cross_entropy", data=loader), max_iter=max_iter)
    out.update(value=est.value, matvecs=est.matvecs)
elif mode == "tensors":
    x = torch.stack([loader.dataset[i][0] for i in range(n)])
    y = torch.tensor([loader.dataset[i][1] for i in range(n)])
    est = fm.sharpness(fm.Objective(model, "cross_entropy", x, y, chunk_size=batch), max_iter=max_iter)
    out.update(value=est.value, matvecs=est.matvecs)
out.update(peak_mb=rss_mb(), seconds=time.perf_counter() - start)
print(json.dumps(out))
"""


def _run(mode: str, args: argparse.Namespace) -> dict:
    sizes = [str(args.n), str(args.batch), str(args.max_iter), str(args.threads)]
    cmd = [sys.executable, "-c", CHILD, mode, *sizes]
    env = dict(os.environ)
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{res.stderr}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--max-iter", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-tensors", action="store_true", help="skip the in-memory contrast run")
    ap.add_argument(
        "--mmap-threshold",
        type=int,
        default=0,
        help="glibc MALLOC_MMAP_THRESHOLD_ for the children (bytes): large blocks are then returned to the "
        "OS when freed, so RSS shows live memory rather than the allocator's retained free blocks",
    )
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    start = time.perf_counter()
    rows = {mode: _run(mode, args) for mode in ("base", "one_batch", "loader")}
    if not args.skip_tensors:
        rows["tensors"] = _run("tensors", args)
    p = rows["base"]["p"]
    vec_mb = 4 * p / 2**20
    base = rows["base"]["peak_mb"]
    batch_graph = rows["one_batch"]["peak_mb"] - base
    loader = rows["loader"]["peak_mb"] - base
    print(f"n = {args.n} CIFAR-shaped examples, DataLoader batch {args.batch}, resnet-8 widths (8,16,32): "
          f"p = {p:,} ({vec_mb:.2f} MB per float32 parameter vector); Lanczos max_iter {args.max_iter}; "
          f"{args.threads} threads; MALLOC_MMAP_THRESHOLD_ {args.mmap_threshold or 'default'}")  # fmt: skip
    print(f"{'run':28s} {'peak RSS MB':>12s} {'above base MB':>14s} {'seconds':>8s}")
    for mode, r in rows.items():
        print(f"{mode:28s} {r['peak_mb']:12.1f} {r['peak_mb'] - base:14.1f} {r.get('seconds', 0.0):8.1f}")
    data_mb = args.n * 3 * 32 * 32 * 4 / 2**20
    print(f"the data set as one float32 tensor would be {data_mb:.0f} MB")
    extra_vectors = (loader - batch_graph) / vec_mb
    print(f"loader run above base: {loader:.1f} MB = one batch's graph {batch_graph:.1f} MB + "
          f"{loader - batch_graph:.1f} MB (= {extra_vectors:.1f} parameter-sized vectors)")  # fmt: skip
    if "value" in rows["loader"] and "tensors" in rows:
        diff = abs(rows["loader"]["value"] - rows["tensors"]["value"]) / abs(rows["tensors"]["value"])
        print(f"sharpness loader vs tensors: relative difference {diff:.1e}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
