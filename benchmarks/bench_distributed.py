"""HVP throughput of a data-parallel Objective on 1 and 2 processes (gloo, one thread each), all-reduce share.

Run:  .venv/bin/python benchmarks/bench_distributed.py [--n 8192] [--hvps 20] [--width 256] [--repeats 3]

Model: an MLP 784-width-width-10 (float32) with cross-entropy on ``--n`` random MNIST-shaped examples (the
same on every process, seeded). Each configuration runs in fresh processes started by
``torch.multiprocessing`` with one intra-op thread each:

* 1 rank: ``Objective(model, "cross_entropy", x, y)`` on all n examples, no process group;
* 2 ranks: a gloo process group (``file://`` rendezvous on the loopback machine), each process
  ``Objective(...).shard()`` with n/2 examples; every HVP ends in one ``all_reduce`` of a p-vector.

Per configuration: two warm-up products, then ``--hvps`` Hessian-vector products at the base point (one
backward pass each through the cached gradient graph, as Lanczos does), timed after a barrier, best of
``--repeats``. The all-reduce share is the time spent inside ``Objective.allreduce`` (wrapped with a timer)
over the total (it includes waiting for the slower rank), and, separately, the time of as many back-to-back
all-reduces of a p-vector alone (the communication cost itself). Printed: HVPs per second for 1 and 2
ranks, their ratio (the speedup; 2.0 is perfect), the shares, and the largest relative difference of H v
between the two (rounding only).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _worker(rank: int, world: int, args: dict[str, Any], out: str) -> None:
    import torch
    import torch.distributed as td
    from torch import nn

    import flatminima as fm

    torch.set_num_threads(1)
    if world > 1:
        td.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    torch.manual_seed(0)
    w = args["width"]
    model = nn.Sequential(nn.Linear(784, w), nn.ReLU(), nn.Linear(w, w), nn.ReLU(), nn.Linear(w, 10))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args["n"], 784, generator=g)
    y = torch.randint(0, 10, (args["n"],), generator=g)
    obj = fm.Objective(model, "cross_entropy", x, y)
    if world > 1:
        obj = obj.shard()
    inner = obj.allreduce
    spent = [0.0]

    def timed(t: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        result = inner(t)
        spent[0] += time.perf_counter() - start
        return result

    obj.allreduce = timed  # type: ignore[method-assign]
    v = torch.randn(obj.num_params, generator=torch.Generator().manual_seed(2))
    for _ in range(2):
        hv = obj.hvp(v)
    best = None
    for _ in range(args["repeats"]):
        if world > 1:
            td.barrier()
        spent[0] = 0.0
        start = time.perf_counter()
        for _ in range(args["hvps"]):
            hv = obj.hvp(v)
        seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, spent[0])
    alone = 0.0  # the all-reduce of a p-vector by itself (no waiting for a slower rank's product)
    if world > 1:
        td.barrier()
        start = time.perf_counter()
        for _ in range(args["hvps"]):
            inner(v)
        alone = time.perf_counter() - start
    if rank == 0:
        result = {"p": obj.num_params, "n_local": obj.n_local, "seconds": best[0], "allreduce": best[1]}
        result["allreduce_alone"] = alone
        result["hv"] = hv.tolist()
        Path(out, f"world{world}.json").write_text(json.dumps(result))
    if world > 1:
        td.destroy_process_group()


def _run(world: int, args: dict[str, Any]) -> dict[str, Any]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as out:
        mp.spawn(_worker, args=(world, args, out), nprocs=world, join=True)
        return json.loads(Path(out, f"world{world}.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--hvps", type=int, default=20)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = vars(ap.parse_args())
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import numpy as np

    one, two = _run(1, args), _run(2, args)
    k = args["hvps"]
    t1, t2 = k / one["seconds"], k / two["seconds"]
    hv1, hv2 = np.array(one["hv"]), np.array(two["hv"])
    diff = float(np.abs(hv1 - hv2).max() / np.abs(hv1).max())
    print(f"MLP 784-{args['width']}-{args['width']}-10, p = {one['p']:,}, n = {args['n']} (2 ranks: "
          f"{two['n_local']} + {args['n'] - two['n_local']}), float32, one thread per process, "
          f"{k} HVPs, best of {args['repeats']}")  # fmt: skip
    print(f"{'ranks':>5s} {'HVP/s':>8s} {'s per HVP':>10s} {'in all_reduce':>14s} {'all_reduce alone':>17s}")
    for world, r, tput in ((1, one, t1), (2, two, t2)):
        share, alone = r["allreduce"] / r["seconds"], r["allreduce_alone"] / r["seconds"]
        print(f"{world:5d} {tput:8.2f} {r['seconds'] / k:10.4f} {share:14.1%} {alone:17.1%}")
    print("in all_reduce: share of the HVP loop spent inside Objective.allreduce (includes waiting for the "
          "slower rank); all_reduce alone: the same number of all-reduces of a p-vector back to back, as a "
          "share of the HVP loop (the communication cost itself)")  # fmt: skip
    print(f"speedup 2 ranks / 1 rank: {t2 / t1:.2f}x; max relative difference of H v: {diff:.1e}")


if __name__ == "__main__":
    main()
